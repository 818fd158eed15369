"""Make matplotlib draw Chinese text on Linux, macOS and Windows with no manual step.

Call :func:`setup_chinese_font` once (every chapter's first cell does).  It looks for a
CJK font that is installed on the system (Noto Sans CJK, Source Han Sans, WenQuanYi,
SimHei, Microsoft YaHei, PingFang …), registers the file with matplotlib's font manager
with ``fontManager.addfont`` — so a stale font cache does not matter — and makes it the
default sans-serif font.  On Debian/Ubuntu/Colab install one with
``apt-get install fonts-noto-cjk``; any font file can also be named in the environment
variable ``LLMBOOK_FONT``.
"""

from __future__ import annotations

import glob
import os
import sys
import warnings

import matplotlib

__all__ = ["setup_chinese_font", "find_cjk_font", "FONT_HINT", "CJKFontNotFound"]

FONT_HINT = (
    "install a Chinese font: Debian/Ubuntu/Colab `apt-get install fonts-noto-cjk`, "
    "macOS and Windows ship one already; or set LLMBOOK_FONT=/path/to/font.ttf|otf|ttc"
)

# File-name patterns of common CJK fonts, most preferred first.
_PATTERNS = [
    "NotoSansCJK*-Regular.tt[fc]",
    "NotoSansCJK*Regular.otf",
    "NotoSansSC-Regular.*",
    "SourceHanSans*-Regular.*",
    "NotoSansCJK*.ttc",
    "wqy-microhei.ttc",
    "wqy-zenhei.ttc",
    "msyh.ttc",
    "msyh.ttf",
    "simhei.ttf",
    "simsun.ttc",
    "PingFang.ttc",
    "STHeiti*.ttc",
    "Hiragino Sans GB*.ttc",
    "Arial Unicode.ttf",
    "DroidSansFallback*.ttf",
]

_SEARCH_DIRS = [
    "/usr/share/fonts",
    "/usr/local/share/fonts",
    "~/.local/share/fonts",
    "~/.fonts",
    "/System/Library/Fonts",
    "/Library/Fonts",
    "~/Library/Fonts",
    "C:/Windows/Fonts",
]

_PROBE = "中文字体测试"
_chosen: str | None = None


def _has_cjk_glyphs(path: str) -> bool:
    from matplotlib.ft2font import FT2Font

    try:
        font = FT2Font(path)
    except Exception:  # unreadable or unsupported file
        return False
    return all(font.get_char_index(ord(ch)) != 0 for ch in _PROBE)


def _candidate_files() -> list[str]:
    found: list[str] = []
    env = os.environ.get("LLMBOOK_FONT")
    if env:
        found.append(env)
    dirs = [os.path.expanduser(d) for d in _SEARCH_DIRS]
    if sys.platform == "win32":
        windir = os.environ.get("WINDIR", "C:/Windows")
        dirs.append(os.path.join(windir, "Fonts"))
    for pattern in _PATTERNS:
        for d in dirs:
            if os.path.isdir(d):
                found.extend(sorted(glob.glob(os.path.join(d, "**", pattern), recursive=True)))
    return list(dict.fromkeys(found))


def find_cjk_font() -> str | None:
    """Return the path of an installed font that has Chinese glyphs, or ``None``."""
    for path in _candidate_files():
        if os.path.isfile(path) and _has_cjk_glyphs(path):
            return path
    return None


def setup_chinese_font(strict: bool = False) -> str | None:
    """Register a CJK font with matplotlib and make it the default.

    Returns the font family name that was set, or ``None`` when no font was found
    (a warning with the fix is issued; with ``strict=True`` a ``RuntimeError``).
    Calling it again is cheap.
    """
    global _chosen
    from matplotlib import font_manager

    if _chosen is None:
        path = find_cjk_font()
        if path is None:
            msg = f"no Chinese font found, figure labels would show as boxes; {FONT_HINT}"
            if strict:
                raise CJKFontNotFound(msg)
            warnings.warn(msg, stacklevel=2)
            return None
        font_manager.fontManager.addfont(path)
        _chosen = font_manager.FontProperties(fname=path).get_name()
    rc = matplotlib.rcParams
    # An explicit family list lets matplotlib fall back glyph by glyph: CJK characters
    # from the CJK font, symbols it lacks (e.g. subscripts ₂) from DejaVu Sans.
    rc["font.family"] = [_chosen, "DejaVu Sans"]
    rc["font.sans-serif"] = [_chosen] + [f for f in rc["font.sans-serif"] if f != _chosen]
    rc["axes.unicode_minus"] = False
    return _chosen


class CJKFontNotFound(RuntimeError):
    """Raised by ``setup_chinese_font(strict=True)`` when no CJK font is installed."""
