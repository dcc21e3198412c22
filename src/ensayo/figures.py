"""Figures and pages without pyplot: plots are drawn on `matplotlib.figure.Figure` objects, which need no backend,
so importing ensayo never changes a notebook's plotting backend. Saved atomically as PNG files, or inlined in
self-contained HTML pages, which share one style."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ensayo.store import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# the look of every page ensayo writes (reports, explanations, data reports)
STYLE = """body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
table{border-collapse:collapse;font-size:.85rem;margin:1rem 0}td,th{border:1px solid #ccc;padding:.25rem .5rem;
text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}img{max-width:100%}
.note{color:#555;font-size:.9rem}section.row{border:1px solid #ddd;border-radius:6px;padding:.8rem 1rem;margin:1rem 0}
.answer{font-size:1.1rem}.share{color:#555;font-size:.9rem}.token{padding:.1rem .25rem;margin:.1rem;
border-radius:3px;display:inline-block}"""


def figure(**options: Any) -> Figure:
    """A new figure (`figsize`, `dpi`, ...) with its own canvas."""
    from matplotlib.figure import Figure  # 1.4 s of import: only where a plot is drawn

    return Figure(**options)


def save(drawn: Figure, path: Path, dpi: int = 110) -> Path:
    """The figure as a PNG file, written atomically."""
    with atomic_path(path) as temporary:
        drawn.savefig(temporary, dpi=dpi, bbox_inches="tight", format="png")
    return path


def png_base64(drawn: Figure, dpi: int = 90) -> str:
    """The figure as base64 PNG text, for an `<img src="data:image/png;base64,...">` in a page."""
    buffer = io.BytesIO()
    drawn.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def inline(drawn: Figure, alt: str, dpi: int = 90) -> str:
    """An `<img>` holding the figure."""
    import html

    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{png_base64(drawn, dpi)}">'


def page(title: str, body: str, style: str = "") -> str:
    """A self-contained HTML page: nothing is fetched from elsewhere."""
    import html

    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}{style}</style></head><body>{body}</body></html>")
