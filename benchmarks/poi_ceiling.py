"""How far can a model of the POI inputs go on the benchmark's split? (seed 002)

The outcome columns (log Likes, Bookmarks, Dislikes) fall in a few tight clusters, found here with a
Gaussian mixture. The class is a cut of each row's place in its cluster, over its tier. Three readings
follow, each the training rows' most common class per cell, scored on validation and test:

- outcome cells: the true cluster and the tier. This is what the outcome columns allow, and no input has it.
- input cells: what the inputs show of the cluster, which is a sculpture (category Escultura), a photo
  stored at JPEG quality 60, or a photo that a gradient-boosting classifier of the photo statistics
  (trained on the training rows) reads as blurred or sharp, and the tier.
- repeated POIs: rows whose id repeats have the same photo and metadata and different outcomes. For each
  split this counts them and the most that one answer per POI gets right.

    ENSAYO_DATA=../shared/data python benchmarks/poi_ceiling.py
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "poi-engagement-pretrained.yaml"
SPLITS = ("train", "validation", "test")


def outcome_clusters(table: pl.DataFrame, clusters: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Cluster of every row in log (Likes, Bookmarks, Dislikes), numbered by mean log Likes, and the means."""
    from sklearn.mixture import GaussianMixture

    outcomes = np.log(table.select("Likes", "Bookmarks", "Dislikes").to_numpy().astype(np.float64))
    mixture = GaussianMixture(clusters, n_init=10, random_state=0).fit(outcomes)
    order = np.argsort(mixture.means_[:, 0])
    rank = np.empty(clusters, dtype=int)
    rank[order] = np.arange(clusters)
    return rank[mixture.predict(outcomes)], mixture.means_[order]


def most_common_class(cells: list[tuple], labels: list[str]) -> dict[tuple, str]:
    votes: defaultdict[tuple, Counter[str]] = defaultdict(Counter)
    for cell, label in zip(cells, labels, strict=True):
        votes[cell][label] += 1
    return {cell: count.most_common(1)[0][0] for cell, count in votes.items()}


def accuracy(answer: dict[tuple, str], cells: list[tuple], labels: list[str], rows: np.ndarray) -> float:
    """Share of `rows` whose cell's answer is their label; a cell unseen in training counts as wrong."""
    return float(np.mean([answer.get(cells[i]) == labels[i] for i in np.flatnonzero(rows)]))


def main() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    from ensayo.data import load_splits
    from ensayo.features.image_stats import STATS, image_statistics
    from ensayo.models import load_recipe

    splits = load_splits(load_recipe(RECIPE))
    everything = pl.concat([getattr(splits, s).with_columns(pl.lit(s).alias("split")) for s in SPLITS],
                           how="diagonal")
    cluster, means = outcome_clusters(everything)
    print("outcome clusters (mean log Likes, Bookmarks, Dislikes; rows):")
    for k, (likes, bookmarks, dislikes) in enumerate(means):
        print(f"  {k}: {likes:5.2f} {bookmarks:5.2f} {dislikes:5.2f}  {(cluster == k).sum():4d}")

    photos = everything["main_image_path"].to_list()
    statistics = np.array([[image_statistics(p)[s] for s in STATS] for p in photos])
    sculpture = everything["categories"].str.contains("Escultura").to_numpy()
    low_quality = statistics[:, STATS.index("jpeg_quality")] <= 70  # the files are at quality 85 or 60
    sharp_cluster = means[cluster, 0] > 8.5  # the e^9 and e^10 Likes clusters
    in_split = {s: (everything["split"] == s).to_numpy() for s in SPLITS}
    fit_rows = in_split["train"] & ~sculpture & ~low_quality
    reader = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, max_leaf_nodes=15, random_state=0)
    reader.fit(statistics[fit_rows], sharp_cluster[fit_rows])
    looks_sharp = reader.predict(statistics)

    tier = everything["tier"].cast(pl.String).to_list()
    labels = everything["engagement_level"].to_list()
    outcome = [(int(c), t) for c, t in zip(cluster, tier, strict=True)]
    seen = [("sculpture" if s else "quality 60" if q else "sharp" if h else "blurred", t)
            for s, q, h, t in zip(sculpture, low_quality, looks_sharp, tier, strict=True)]
    repeated = everything.select(pl.len().over("id") > 1).to_series().to_numpy()
    print("\n| cells | train | validation | test | test, single POIs | test, repeated POIs |")
    print("|---|---|---|---|---|---|")
    for name, cells in (("outcome cluster x tier", outcome), ("what the inputs show x tier", seen)):
        train = in_split["train"]
        answer = most_common_class([c for c, m in zip(cells, train, strict=True) if m],
                                   [y for y, m in zip(labels, train, strict=True) if m])
        test = in_split["test"]
        scores = [accuracy(answer, cells, labels, rows) for rows in
                  (train, in_split["validation"], test, test & ~repeated, test & repeated)]
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in scores) + " |")

    print("\nrepeated POIs (same id, photo and metadata; different outcomes):")
    for s in SPLITS:
        rows = everything.filter(pl.Series(in_split[s] & repeated))
        best = rows.group_by("id", "engagement_level").len().group_by("id").agg(pl.col("len").max())["len"].sum()
        print(f"  {s}: {rows.height} of {int(in_split[s].sum())} rows ({rows.height / in_split[s].sum():.1%}), "
              f"{rows['id'].n_unique()} POIs; one answer per POI gets at most {best} right")


if __name__ == "__main__":
    sys.exit(main())
