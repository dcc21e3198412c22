"""Explanations -> one self-contained HTML page: each row's answer, its inputs' shares, the tokens coloured by
what they did (red for the answer, blue against it), and saliency maps drawn over the spectrogram or photo,
inline as PNG."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from ensayo import figures
from ensayo.models import InputExplanation, RowExplanation
from ensayo.store import write_text

STYLE = """.scale{display:flex;align-items:center;gap:.5rem;font-size:.8rem;color:#555;margin:.3rem 0}
.scale .bar{display:inline-block;width:14rem;height:.8rem;border:1px solid #ccc}.typed{font-size:1.05rem}"""


def _colour(weight: float, scale: float) -> str:
    """Red for a token that pushed the answer, blue for one that pulled against it; paler for less."""
    strength = min(abs(weight) / scale, 1.0) if scale > 0 else 0.0
    red, blue = (255, int(255 * (1 - strength))) if weight >= 0 else (int(255 * (1 - strength)), 255)
    return f"rgb({red},{int(255 * (1 - strength))},{blue})"


def _tokens(item: InputExplanation) -> str:
    """The text as typed, each word coloured by its share (what the model read of it in its tooltip), then the
    tokens the model read; a scale says what the colours mean."""
    scale = max((abs(w + s) for _, w, s in item.tokens), default=0.0)
    scale = max([scale, *(abs(share) for _, _, share in item.typed)])
    typed = "".join(
        f'<span class="token typed" style="background:{_colour(share, scale)}" data-weight="{share:.6f}" '
        f'title="read as: {html.escape(read) or "(nothing)"}; share {share:+.4f}">{html.escape(word)}</span>'
        for word, read, share in item.typed)
    read = "".join(
        f'<span class="token" style="background:{_colour(w + s, scale)}" title="word {w:+.4f}, subwords {s:+.4f}"'
        f' data-weight="{w + s:.6f}">{html.escape(token)}</span>' for token, w, s in item.tokens)
    as_typed = f'<p class="typed">as typed: {typed}</p>' if typed else ""
    return f'{as_typed}<p class="read">as the model read it: {read}</p>{_scale(scale)}'


def _scale(limit: float) -> str:
    """The colour scale: blue pulled against the answer, red pushed it, by how much."""
    stops = ", ".join(_colour(limit * step / 4, limit) for step in range(-4, 5))
    return (f'<div class="scale"><span>{-limit:+.3f} against</span><span class="bar" style="background:'
            f'linear-gradient(to right, {stops})"></span><span>{limit:+.3f} for</span></div>')


def _map(item: InputExplanation) -> str:
    figure = figures.figure(figsize=(9, 3), layout="tight")
    (left, right) = figure.subplots(1, 2)
    assert item.map is not None and item.background is not None
    limit = float(np.abs(item.map).max()) or 1.0
    if item.kind == "spectrogram":
        left.imshow(item.background, origin="lower", aspect="auto", cmap="magma")
        left.set(title="spectrogram (normalized)", xlabel="frame", ylabel="mel bin")
        right.imshow(item.map, origin="lower", aspect="auto", cmap="coolwarm", vmin=-limit, vmax=limit)
        right.set(title="integrated gradients", xlabel="frame", ylabel="mel bin")
    else:
        left.imshow(item.background)
        left.set(title="photo as the model saw it")
        right.imshow(item.background)
        right.imshow(item.map, cmap="coolwarm", vmin=-limit, vmax=limit, alpha=0.6)
        right.set(title="integrated gradients over the photo")
        for axes in (left, right):
            axes.axis("off")
    return figures.inline(figure, f"saliency of {item.name}")


def _input(item: InputExplanation) -> str:
    share = f'<p class="share"><b>{html.escape(item.name)}</b>: {item.total:+.4f}'
    if item.value:
        share += f" (value {html.escape(item.value)})"
    body = _tokens(item) if item.kind == "tokens" else _map(item) if item.map is not None else ""
    return share + "</p>" + body


def _row(index: int, row: RowExplanation) -> str:
    truth = f" (true: {html.escape(row.true)})" if row.true is not None else ""
    if row.explained:
        said = (f"why <b>{html.escape(row.explained)}</b> (probability {row.probability:.3f}); the model answered "
                f"{html.escape(row.predicted)}")
    else:
        said = f"<b>{html.escape(row.predicted)}</b> with probability {row.probability:.3f}"
    return (f'<section class="row" id="row{index}"><p class="answer">Row {index + 1}: {said}{truth}</p>'
            + "".join(_input(item) for item in row.inputs) + "</section>")


def write_page(rows: list[RowExplanation], path: Path, title: str, note: str) -> Path:
    body = "".join(_row(i, row) for i, row in enumerate(rows))
    write_text(path, figures.page(title, f"<h1>{html.escape(title)}</h1><p>{html.escape(note)}</p>{body}", STYLE))
    return path
