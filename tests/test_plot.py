"""Chinese text in figures: a real render must not warn about missing glyphs."""

from __future__ import annotations

import io
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from llmbook.book import plot  # noqa: E402


def _render_chinese_figure() -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig, ax = plt.subplots()
        ax.plot([1, 2, 3], [3, 1, 2], label="困惑度")
        ax.set_title("词频与排名（齐夫定律）")
        ax.set_xlabel("排名")
        ax.set_ylabel("频率")
        ax.legend()
        fig.savefig(io.BytesIO(), format="png")
        plt.close(fig)
    return [str(w.message) for w in caught]


def test_chinese_figure_renders_without_missing_glyphs():
    name = plot.setup_chinese_font(strict=True)
    assert name
    messages = _render_chinese_figure()
    missing = [m for m in messages if "Glyph" in m and "missing" in m]
    assert not missing, missing


def test_without_setup_the_default_font_would_miss_glyphs():
    """Guards the test above: DejaVu Sans alone cannot draw Chinese, so the check can fail."""
    with matplotlib.rc_context({"font.family": "sans-serif", "font.sans-serif": ["DejaVu Sans"]}):
        messages = _render_chinese_figure()
    assert any("Glyph" in m and "missing" in m for m in messages)


def test_font_found_even_with_a_stale_cache(monkeypatch):
    """addfont registers the file directly, so a font cache that predates the font is fine."""
    from matplotlib import font_manager

    path = plot.find_cjk_font()
    assert path is not None
    stale = [e for e in font_manager.fontManager.ttflist if e.fname != path]
    monkeypatch.setattr(font_manager.fontManager, "ttflist", stale)
    monkeypatch.setattr(plot, "_chosen", None)
    assert plot.setup_chinese_font(strict=True)
    assert not [m for m in _render_chinese_figure() if "Glyph" in m]


def test_env_override_and_clear_error_when_no_font(monkeypatch, tmp_path):
    bogus = tmp_path / "not-a-font.ttf"
    bogus.write_bytes(b"nope")
    monkeypatch.setenv("LLMBOOK_FONT", str(bogus))
    monkeypatch.setattr(plot, "_SEARCH_DIRS", [])
    monkeypatch.setattr(plot, "_chosen", None)
    assert plot.find_cjk_font() is None  # an unreadable file is skipped, not trusted
    with pytest.raises(plot.CJKFontNotFound, match="fonts-noto-cjk"):
        plot.setup_chinese_font(strict=True)
    with pytest.warns(UserWarning, match="no Chinese font found"):
        assert plot.setup_chinese_font() is None
