"""The data layer: counts, fixed splits, checksums, and the download path (local server only)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import threading
from collections import Counter
from pathlib import Path

import pytest

from llmbook.data import people_daily, poetry, registry, sentiment


def test_poem_counts_and_forms():
    poems = poetry.load_poems()
    assert len(poems) == 78656
    assert Counter(p.dynasty for p in poems) == {"唐": 57603, "宋": 21053}
    forms = Counter(p.form for p in poems)
    assert forms["五言绝句"] == 3985 and forms["七言律诗"] == 8020 and forms["词"] == 21053
    # Titles and authors are kept (later chapters use them).
    jys = [p for p in poems if p.title == "静夜思"]
    assert jys and jys[0].author == "李白"


def test_poems_are_simplified():
    text = "".join(p.text for p in poetry.load_poems(dynasty="唐", limit=2000))
    assert "帝京" in text or "长" in text
    for trad in "書長門東風鳥無":
        assert trad not in text, f"traditional character {trad} left after OpenCC t2s"


def test_poem_form_classifier():
    assert poetry.poem_form(["床前明月光，疑是地上霜。", "举头望明月，低头思故乡。"]) == "五言绝句"
    assert poetry.poem_form(["一二三四五六七，一二三四五六七。"] * 4) == "七言律诗"
    assert poetry.poem_form(["一二三，四五六七。"]) == "其他"
    assert poetry.split_lines(["春眠不觉晓，处处闻啼鸟。"]) == ["春眠不觉晓", "处处闻啼鸟"]


def test_load_poems_rejects_bad_filters():
    with pytest.raises(ValueError, match="dynasty must be"):
        poetry.load_poems(dynasty="明")
    with pytest.raises(ValueError, match="unknown poem form"):
        poetry.load_poems(form="六言绝句")


def test_poetry_split_is_disjoint_stable_and_text_based():
    split = poetry.poetry_split()
    texts = {k: {p.text for p in v} for k, v in split.items()}
    assert not texts["train"] & texts["valid"]
    assert not texts["train"] & texts["test"]
    assert not texts["valid"] & texts["test"]
    n = sum(len(v) for v in split.values())
    assert n == 78656
    assert 0.04 < len(split["test"]) / n < 0.06
    again = poetry.poetry_split(list(reversed(poetry.load_poems())))
    assert {p.id for p in again["test"]} == {p.id for p in split["test"]}


def test_lm_corpus_is_regular_tang_poems():
    train, valid, test = (poetry.poem_lm_texts(s) for s in ("train", "valid", "test"))
    assert (len(train), len(valid), len(test)) == (33430, 1818, 1924)
    assert not set(train) & set(test)
    with pytest.raises(ValueError, match="split must be"):
        poetry.poem_lm_texts("dev")


def test_people_daily_gold_segmentation():
    sents = people_daily.load_people_daily()
    assert len(sents) == 19484
    first = sents[0]
    assert first.words[:3] == ("迈向", "充满", "希望") and first.tags[:3] == ("v", "v", "n")
    assert all(len(s.words) == len(s.tags) for s in sents[:1000])
    assert people_daily.people_daily_text()[0].startswith("迈向充满希望的新世纪")


def test_sentiment_split_counts_disjoint_and_stratified():
    split = sentiment.load_sentiment()
    assert {k: len(v) for k, v in split.items()} == {"train": 13891, "valid": 1736, "test": 1736}
    texts = {k: {e.text for e in v} for k, v in split.items()}
    assert not texts["train"] & texts["test"] and not texts["valid"] & texts["test"]
    assert not texts["train"] & texts["valid"]
    # No text carries both labels, and the label balance is the same in every split.
    share = {k: sum(e.label for e in v) / len(v) for k, v in split.items()}
    assert max(share.values()) - min(share.values()) < 0.01
    raw = sentiment.load_review_texts()
    assert len(set(raw[0]) & set(raw[1]) & (texts["train"] | texts["test"])) == 0
    assert sentiment.load_sentiment("test") == split["test"]
    with pytest.raises(ValueError, match="split must be one of"):
        sentiment.load_sentiment("dev")


def test_split_recipe_reproduces_the_recorded_split():
    rebuilt = sentiment.make_sentiment_split(sentiment.clean_reviews())
    recorded = sentiment.load_sentiment()
    for name in ("train", "valid", "test"):
        assert {e.text for e in rebuilt[name]} == {e.text for e in recorded[name]}


@pytest.fixture()
def data_copy(tmp_path, monkeypatch):
    """A private copy of data/ that the test may damage."""
    src = registry.data_dir()
    dst = tmp_path / "data"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("scripts", "checkpoints"))
    monkeypatch.setenv("LLMBOOK_DATA", str(dst))
    registry._verified.clear()
    return dst


def test_manifest_covers_every_data_file():
    manifest = registry.read_manifest()
    root = registry.data_dir()
    files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    files = {
        f
        for f in files
        if not f.startswith("scripts/") and f != "MANIFEST.sha256" and "__pycache__" not in f
    }
    assert files == set(manifest), "run `make manifest` after changing data/"
    assert all(v == "ok" for v in registry.verify_data().values())
    packaged = Path(registry.__file__).parents[1] / "resources" / "MANIFEST.sha256"
    assert packaged.read_text() == (root / "MANIFEST.sha256").read_text()


def test_corrupted_file_is_detected_with_fix(data_copy):
    path = data_copy / "sentiment_split.tsv.gz"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(
        registry.DataFileError,
        match=r"sentiment_split\.tsv\.gz.*corrupted.*build_sentiment_split\.py",
    ):
        registry.data_path("sentiment_split.tsv.gz")
    assert "checksum mismatch" in registry.verify_data(data_copy)["sentiment_split.tsv.gz"]


def test_missing_file_is_named_with_fix(data_copy, monkeypatch):
    (data_copy / "poetry.jsonl.xz").unlink()
    with pytest.raises(
        registry.DataFileError, match=r"poetry\.jsonl\.xz is missing.*build_poetry\.py"
    ):
        registry.data_path("poetry.jsonl.xz", fetch=False)
    with pytest.raises(registry.DataFileError, match="not listed"):
        registry.data_path("nonexistent.csv")


def test_hash_fraction_keeps_every_split_where_it_was():
    # the values of the formula the poetry, People's Daily and pinyin splits always used
    # (sha1 -> first 8 hex digits / 0xFFFFFFFF); changing them would reshuffle every split
    recorded = {
        "床前明月光": 0.5961163904508847,
        "": 0.8524420221458286,
        "abc": 0.6624945529416424,
        "中华人民共和国成立五十周年": 0.808278031369736,
    }
    for text, fraction in recorded.items():
        assert registry.hash_fraction(text) == fraction
        digest = hashlib.sha1(text.encode("utf-8")).digest()
        assert registry.hash_fraction(text) == int.from_bytes(digest[:4], "big") / (2**32 - 1)
    test = {p.text for p in poetry.poetry_split()["test"]}
    assert test == {p.text for p in poetry.load_poems() if registry.hash_fraction(p.text) < 0.05}


def test_sha256_file_matches_hashlib(tmp_path):
    path = tmp_path / "blob.bin"
    payload = bytes(range(256)) * 5000  # more than one 1 MiB chunk
    path.write_bytes(payload)
    assert registry.sha256_file(path) == hashlib.sha256(payload).hexdigest()


def test_shipped_checkpoints_are_found_and_verified():
    for name in registry.SHIPPED_CHECKPOINTS:
        path = registry.shipped_checkpoint(name)
        assert path == registry.data_dir() / "checkpoints" / name
        # the checkpoint itself, or an artifact that keeps it in model/ beside its results
        assert (path / "checkpoint.json").is_file() or (
            path / "model" / "checkpoint.json"
        ).is_file()
    assert registry.shipped_checkpoint() == registry.shipped_checkpoint("gpt-poetry")


def test_unknown_shipped_checkpoint_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown shipped checkpoint 'gpt2'.*'gpt-modern'"):
        registry.shipped_checkpoint("gpt2")


def test_shipped_checkpoint_missing_from_the_manifest_says_how_to_rebuild(data_copy):
    manifest = data_copy / "MANIFEST.sha256"
    lines = manifest.read_text(encoding="utf-8").splitlines(keepends=True)
    manifest.write_text(
        "".join(ln for ln in lines if "checkpoints/gpt-modern/" not in ln), encoding="utf-8"
    )
    with pytest.raises(
        FileNotFoundError,
        match=r"data/checkpoints/gpt-modern/ is not in data/MANIFEST\.sha256.*cpu-modern\.toml",
    ):
        registry.shipped_checkpoint("gpt-modern")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture()
def local_server(tmp_path):
    root = tmp_path / "www" / "data"
    root.mkdir(parents=True)
    handler = functools.partial(_Quiet, directory=str(tmp_path / "www"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/data"
    server.shutdown()


def test_fetch_file_from_local_server(tmp_path, local_server):
    root, url = local_server
    payload = "床前明月光\n".encode()
    (root / "x.txt").write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    dest = tmp_path / "cache"
    got = registry.fetch_file("x.txt", dest_dir=dest, sha256=digest, base_url=url)
    assert got.read_bytes() == payload
    # A server that returns different bytes is refused and leaves nothing behind.
    (root / "y.txt").write_bytes(b"tampered")
    with pytest.raises(registry.DataFileError, match="does not match the manifest"):
        registry.fetch_file("y.txt", dest_dir=dest, sha256=digest, base_url=url)
    assert not (dest / "y.txt").exists() and not (dest / "y.txt.part").exists()
    with pytest.raises(registry.DataFileError, match="could not download"):
        registry.fetch_file("absent.txt", dest_dir=dest, sha256=digest, base_url=url)


def test_colab_path_fetches_missing_files_on_demand(tmp_path, local_server, monkeypatch):
    """A pip-installed package with no data/ downloads and verifies files when first used."""
    root, url = local_server
    shutil.copy(
        registry._repo_data_dir() / "sentiment_split.tsv.gz", root / "sentiment_split.tsv.gz"
    )
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copy(registry._repo_data_dir() / "MANIFEST.sha256", cache / "MANIFEST.sha256")
    monkeypatch.setenv("LLMBOOK_DATA", str(cache))
    monkeypatch.setenv("LLMBOOK_DATA_URL", url)
    registry._verified.clear()
    path = registry.data_path("sentiment_split.tsv.gz")
    assert path == cache / "sentiment_split.tsv.gz" and path.is_file()
