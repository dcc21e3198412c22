"""Bootstrap intervals of a test split's metrics: resampled rows, as weights, many resamples at once."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ensayo.metrics.scores import QUALITY
from ensayo.outputs.category import CategoryOutput

BOOTSTRAP_CELLS = 4_000_000  # resample weights held at once (resamples x rows), about 32 MB


def weighted_scores(true: np.ndarray, predicted: np.ndarray, true_log_p: np.ndarray, weights: np.ndarray,
                     classes: int) -> dict[str, np.ndarray]:
    """The quality metrics of each row of `weights` (resamples, rows): every row counted as often as its weight
    says, from integer labels, with the definitions of `classification_metrics` (macro over the classes present
    in the resample's true labels)."""
    import scipy.sparse as sp

    rows = np.arange(len(true))

    def counts(labels: np.ndarray, mask: np.ndarray) -> np.ndarray:  # (resamples, classes) weighted counts
        one_hot = sp.csr_matrix((mask.astype(float), (rows, labels)), shape=(len(true), classes))
        return np.asarray((one_hot.T @ weights.T).T)

    total = weights.sum(axis=1)
    true_count = counts(true, np.ones(len(true), dtype=bool))
    predicted_count = counts(predicted, np.ones(len(true), dtype=bool))
    hits = counts(true, true == predicted)
    present = true_count > 0
    recall = np.divide(hits, true_count, out=np.zeros_like(hits), where=present)
    precision = np.divide(hits, predicted_count, out=np.zeros_like(hits), where=predicted_count > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(hits), where=precision + recall > 0)
    share = true_count / total[:, None]
    classes_present = present.sum(axis=1)
    scores = {"accuracy": hits.sum(axis=1) / total,
              "balanced_accuracy": (recall * present).sum(axis=1) / classes_present}
    for name, values in (("precision", precision), ("recall", recall), ("f1", f1)):
        scores[f"macro_{name}"] = (values * present).sum(axis=1) / classes_present
        scores[f"weighted_{name}"] = (values * share).sum(axis=1)
    known = np.isfinite(true_log_p)
    scores["loss"] = -(weights[:, known] @ true_log_p[known]) / np.maximum(weights[:, known].sum(axis=1), 1e-12)
    return scores


def bootstrap_intervals(true: Sequence[str], rows: np.ndarray, output: CategoryOutput, prefix: str = "",
                        resamples: int = 1000, seed: int = 0, confidence: float = 0.95) -> dict[str, float]:
    """`<prefix><metric>_low` and `_high`: a percentile bootstrap interval of each quality metric of these
    `summarise`d rows, resampled with replacement `resamples` times by a generator of its own (`seed`), so
    that no other randomness moves it."""
    if resamples <= 0 or not len(true):
        return {}
    names = sorted(set(true) | set(output.classes))
    code = {label: index for index, label in enumerate(names)}
    true_codes = np.array([code[label] for label in true])
    predicted = np.array([code[label] for label in output.inverse(rows["predicted"])])
    known = rows["label"] >= 0
    true_log_p = np.full(len(true), np.nan)
    true_log_p[known] = np.log(np.clip(rows["true_p"][known].astype(np.float64), 1e-12, None))
    generator = np.random.default_rng(seed)
    block = max(1, min(resamples, BOOTSTRAP_CELLS // len(true)))
    draws: dict[str, list[np.ndarray]] = {name: [] for name in QUALITY}
    for start in range(0, resamples, block):
        weights = generator.multinomial(len(true), np.full(len(true), 1 / len(true)),
                                        size=min(block, resamples - start)).astype(float)
        for name, values in weighted_scores(true_codes, predicted, true_log_p, weights, len(names)).items():
            draws[name].append(values)
    tail = (1 - confidence) / 2 * 100
    intervals = {}
    for name, parts in draws.items():
        values = np.concatenate(parts)
        finite = values[np.isfinite(values)]
        if len(finite):
            low, high = np.percentile(finite, [tail, 100 - tail])
            intervals |= {f"{prefix}{name}_low": float(low), f"{prefix}{name}_high": float(high)}
    return intervals
