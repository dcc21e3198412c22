"""Why a network said what it said, row by row (`explanation.RowExplanation`): integrated gradients with Captum
(the `explain` extra): each input's share of the answer against a neutral baseline (padding for a text, the
training mean for a clip, a photo or a number), and within an input, which tokens, which time-frequency cells or
which pixels. The model is a trained `NeuralClassifier`, which calls this module and so is not imported by it."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import polars as pl
import torch

from ensayo.models.explanation import InputExplanation, RowExplanation
from ensayo.training import encode_split

STEPS = 32  # points on the path from the baseline to the row: Captum's approximation error is reported


# ------------------------------------------------------------------------------------------- neural
def neural_row(model: Any, row: pl.DataFrame, steps: int = STEPS,
               target: int | None = None) -> RowExplanation:
    """The row's attributions to the network's probability of class `target` (by default the predicted one), and
    that class's calibrated probability, as the model answers it."""
    network = model.network
    assert network is not None
    network.eval()
    split = encode_split(model.features, row, np.zeros(1, dtype=np.int64))
    batch = split.batch(np.array([0]), next(network.parameters()).device)
    with torch.no_grad():
        outputs = {name: encoder(batch[name]) for name, encoder in network.encoders.items()}
        probabilities = _calibrated(model, network.head(torch.cat(list(outputs.values()), dim=-1)))[0]
    predicted = int(probabilities.argmax())
    target = predicted if target is None else target
    explained, deltas = [], []
    with warnings.catch_warnings():  # Captum's notes on how it is called are not the user's to read
        warnings.simplefilter("ignore", UserWarning)
        for feature in model.features:
            explanation, delta = _attribute(model, feature, batch[feature.name], outputs, target, steps, row)
            explained.append(explanation)
            deltas.append(delta)
    classes = model.classes.classes
    return RowExplanation(classes[predicted], float(probabilities[target]), explained,
                          delta=float(max(deltas, key=abs)) if deltas else 0.0,
                          explained=classes[target] if target != predicted else "")


def _calibrated(model: Any, logits: torch.Tensor) -> torch.Tensor:
    """The probabilities a user is shown: the logits divided by the run's temperature, then the softmax."""
    return torch.softmax(logits.float() / model.temperature, dim=-1)


def _head_forward(model: Any, name: str, outputs: dict[str, torch.Tensor]):
    """The predicted probabilities as a function of one input's encoder output, the others held at the row's."""
    network = model.network
    assert network is not None

    def probabilities(encoded: torch.Tensor) -> torch.Tensor:
        rows = encoded.shape[0]
        parts = [encoded if key == name else value.expand(rows, -1) for key, value in outputs.items()]
        # the network's own probabilities: a calibration temperature below 1 sharpens them into a function whose
        # path integral 32 steps no longer follow; the temperature changes how sure, not what mattered
        return torch.softmax(network.head(torch.cat(parts, dim=-1)).float(), dim=-1)

    return probabilities


def _attribute(model: Any, feature: Any, value: Any, outputs: dict[str, torch.Tensor], target: int,
               steps: int, row: pl.DataFrame) -> tuple[InputExplanation, float]:
    from captum.attr import IntegratedGradients, LayerIntegratedGradients

    network = model.network
    assert network is not None
    encoder = network.encoders[feature.name]
    head = _head_forward(model, feature.name, outputs)
    kind = feature.type_name
    if kind == "text" and hasattr(encoder, "embed"):
        ids, lengths = value["ids"], value["lengths"]

        def by_ids(token_ids: torch.Tensor) -> torch.Tensor:
            batch = feature.batch_of_ids(token_ids.numpy(), lengths.expand(token_ids.shape[0]).numpy())
            return head(encoder(batch))

        layers = [encoder.embed.words] + ([encoder.embed.subwords] if encoder.embed.subwords is not None else [])
        method = LayerIntegratedGradients(by_ids, layers)
        with encoder.embed.layer_by_layer():
            parts = method.attribute(ids, baselines=torch.zeros_like(ids), target=target, n_steps=steps)
        words = parts[0].sum(-1)[0]
        subwords = parts[1].sum(-1).reshape(ids.shape)[0] if len(parts) > 1 else torch.zeros_like(words)
        texts = feature.pipeline(str(row[feature.column][0]))[: ids.shape[1]]
        if len(texts) != ids.shape[1]:  # no token left reads as one unknown token
            texts = [feature.vocab.tokens[int(i)] for i in ids[0]]
        tokens = [(t, float(w), float(s)) for t, w, s in zip(texts, words, subwords, strict=True)]
        total = float(words.sum() + subwords.sum())
        with torch.no_grad():  # completeness, checked here: Captum's delta does not sum over several layers
            gained = by_ids(ids)[0, target] - by_ids(torch.zeros_like(ids))[0, target]
        typed = typed_words(str(row[feature.column][0]), feature.pipeline, tokens)
        return InputExplanation(feature.name, "tokens", total, tokens=tokens, typed=typed), total - float(gained)
    if kind in ("audio", "image"):
        pixels = value["pixels"] if isinstance(value, dict) else value
        rest = {k: v for k, v in value.items() if k != "pixels"} if isinstance(value, dict) else {}

        def by_values(inputs: torch.Tensor) -> torch.Tensor:
            batch = {"pixels": inputs, **{k: v.expand(inputs.shape[0]) for k, v in rest.items()}} if rest \
                else inputs
            return head(encoder(batch))

        attribution, delta = IntegratedGradients(by_values).attribute(
            pixels, baselines=torch.zeros_like(pixels), target=target, n_steps=steps, internal_batch_size=steps,
            return_convergence_delta=True)
        heat = attribution[0].sum(0) if kind == "image" else attribution[0]
        background = _photo(pixels[0], feature) if kind == "image" else pixels[0].numpy()
        return InputExplanation(feature.name, "image" if kind == "image" else "spectrogram",
                                float(attribution.sum()), map=heat.detach().numpy(),
                                background=background), float(delta.sum())
    # numbers, categories, sentences: the input's share as a whole, at its encoder's output
    encoded = outputs[feature.name].detach()
    neutral = encoder(_zeros_like(value)).detach()
    attribution, delta = IntegratedGradients(head).attribute(encoded, baselines=neutral, target=target,
                                                             n_steps=steps, return_convergence_delta=True)
    return InputExplanation(feature.name, "value", float(attribution.sum()),
                            value=str(row[feature.column][0])), float(delta.sum())


def typed_words(text: str, pipeline: Any, tokens: list[tuple[str, float, float]]) -> list[tuple[str, str, float]]:
    """Each whitespace-separated word of `text` as typed, what the pipeline made of it, and the share of the
    tokens it became; empty when the pipeline's words do not line up with the typed ones (a text cut to
    `max_length`, or normalized across words)."""
    pieces = text.split()
    made = [pipeline.words(piece) for piece in pieces]
    read = [token for token, _, _ in tokens]
    if sum(len(m) for m in made) > len(read) or [w for m in made for w in m] != read[: sum(len(m) for m in made)]:
        return []
    typed, position = [], 0
    for piece, words in zip(pieces, made, strict=True):
        share = sum(w + s for _, w, s in tokens[position: position + len(words)])
        typed.append((piece, " ".join(words), share))
        position += len(words)
    return typed


def _zeros_like(value: Any) -> Any:
    """The neutral input: zeros, which are the training mean of a standardized number and the padding or
    unknown id of a category."""
    if isinstance(value, dict):
        return {k: torch.zeros_like(v) for k, v in value.items()}
    return torch.zeros_like(value)


def _photo(pixels: torch.Tensor, feature: Any) -> np.ndarray:
    """The normalized (3, H, W) pixels back to an (H, W, 3) picture in [0, 1]."""
    mean = torch.tensor(feature.mean).view(3, 1, 1)
    std = torch.tensor(feature.std).view(3, 1, 1)
    return (pixels * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()
