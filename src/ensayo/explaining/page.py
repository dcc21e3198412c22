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


def _colour(weight: float, scale: float) -> str:
    """Red for a token that pushed the answer, blue for one that pulled against it; paler for less."""
    strength = min(abs(weight) / scale, 1.0) if scale > 0 else 0.0
    red, blue = (255, int(255 * (1 - strength))) if weight >= 0 else (int(255 * (1 - strength)), 255)
    return f"rgb({red},{int(255 * (1 - strength))},{blue})"


def _tokens(item: InputExplanation) -> str:
    scale = max((abs(w + s) for _, w, s in item.tokens), default=0.0)
    spans = "".join(
        f'<span class="token" style="background:{_colour(w + s, scale)}" title="word {w:+.4f}, subwords {s:+.4f}"'
        f' data-weight="{w + s:.6f}">{html.escape(token)}</span>' for token, w, s in item.tokens)
    return f"<p>{spans}</p>"


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
    return (f'<section class="row" id="row{index}"><p class="answer">Row {index + 1}: <b>{html.escape(row.predicted)}'
            f"</b> with probability {row.probability:.3f}{truth}</p>"
            + "".join(_input(item) for item in row.inputs) + "</section>")


def write_page(rows: list[RowExplanation], path: Path, title: str, note: str) -> Path:
    body = "".join(_row(i, row) for i, row in enumerate(rows))
    write_text(path, figures.page(title, f"<h1>{html.escape(title)}</h1><p>{html.escape(note)}</p>{body}"))
    return path
