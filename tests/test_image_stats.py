"""Image statistics as an input: what each measure reads from a file, and a model that learns from them."""

import csv
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from helpers.training import explore_report
from PIL import Image, ImageFilter

import ensayo
from ensayo.data import DataError, load_splits
from ensayo.features.image_stats import ImageStatsFeature, ImageStatsPreprocessing, image_statistics
from ensayo.models import load_recipe
from ensayo.recipe import RecipeError
from ensayo.runs import SavedRun


def photo(seed: int, size: int = 64) -> Image.Image:
    """A photo-like picture: smooth shapes plus some fine texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([np.sin(x * rng.uniform(2, 9) + c) * np.cos(y * rng.uniform(2, 9)) for c in range(3)], axis=2)
    pixels = 128 + 80 * base + rng.normal(0, 12, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def test_each_statistic_reads_what_it_says(tmp_path: Path) -> None:
    picture = photo(0)
    for quality in (30, 60, 85, 95):
        picture.save(tmp_path / f"q{quality}.jpg", quality=quality)
        assert image_statistics(str(tmp_path / f"q{quality}.jpg"))["jpeg_quality"] == quality
    picture.save(tmp_path / "lossless.png")
    picture.filter(ImageFilter.GaussianBlur(1.5)).save(tmp_path / "blurred.png")
    Image.fromarray(np.asarray(picture.convert("L"))).convert("RGB").save(tmp_path / "grey.png")
    picture.resize((96, 48)).save(tmp_path / "wide.png")
    sharp, blurred = image_statistics(str(tmp_path / "lossless.png")), image_statistics(str(tmp_path / "blurred.png"))
    assert sharp["jpeg_quality"] == 100
    assert blurred["sharpness"] < sharp["sharpness"] - 1 and blurred["fine_detail"] < sharp["fine_detail"] - 1
    assert blurred["noise"] < sharp["noise"] / 2  # the texture is most of the noise estimate
    assert sharp["colourfulness"] > 10 > image_statistics(str(tmp_path / "grey.png"))["colourfulness"]
    assert image_statistics(str(tmp_path / "q30.jpg"))["bytes_per_pixel"] < image_statistics(
        str(tmp_path / "q95.jpg"))["bytes_per_pixel"]
    # falloff tells blur from what a photo shows: half the contrast under a broad bright wave lowers
    # fine_detail (a share of all the power) but leaves the fall from middle to high frequencies alone
    x = np.arange(64) / 64
    washed = np.asarray(picture, dtype=np.float64) / 2 + 64 + 60 * np.sin(2 * np.pi * x)[None, :, None]
    Image.fromarray(np.clip(washed, 0, 255).astype(np.uint8)).save(tmp_path / "washed.png")
    washed = image_statistics(str(tmp_path / "washed.png"))
    assert washed["fine_detail"] < sharp["fine_detail"] - 1
    assert washed["falloff"] == pytest.approx(sharp["falloff"], abs=0.3)
    assert blurred["falloff"] < sharp["falloff"] - 2
    wide = image_statistics(str(tmp_path / "wide.png"))
    assert (wide["width"], wide["height"]) == pytest.approx((np.log(96), np.log(48)))

    # a large photo's fine structure is read from its central 512 px at full resolution
    large = photo(1, size=700)
    large.save(tmp_path / "large.png")
    large.crop((94, 94, 606, 606)).save(tmp_path / "centre.png")
    whole, centre = image_statistics(str(tmp_path / "large.png")), image_statistics(str(tmp_path / "centre.png"))
    for stat in ("sharpness", "fine_detail", "falloff", "noise"):
        assert whole[stat] == pytest.approx(centre[stat]), stat
    assert whole["width"] == pytest.approx(np.log(700))


def make_copies(folder: Path, rows: int = 90) -> Path:
    """The same kind of photo stored well or badly: the label is the copy's quality, not what it shows."""
    (folder / "images").mkdir(parents=True)
    with open(folder / "copies.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "copy"])
        for row in range(rows):
            label = ["good", "bad"][row % 2]
            picture = photo(row)
            if label == "bad":
                picture = picture.filter(ImageFilter.GaussianBlur(1.2))
            picture.save(folder / "images" / f"{row}.jpg", quality=90 if label == "good" else 40)
            writer.writerow([f"images/{row}.jpg", label])
    return folder / "copies.csv"


def copies_recipe(source: Path, **preprocessing: object) -> dict:
    return {
        "name": "copies",
        "data": {"source": str(source), "split": {"train": 0.6, "validation": 0.2, "test": 0.2, "seed": 1}},
        "inputs": [{"name": "quality", "type": "image_stats", "column": "image", "preprocessing": preprocessing}],
        "output": {"column": "copy"},
        "model": {"encoders": {"quality": {"type": "dense", "size": 8}}, "head": {"hidden": [8], "dropout": 0.0}},
        "train": {"lr": 0.03, "epochs": 15, "batch_size": 16, "seed": 0, "monitor": "val/loss"},
        "track": {"enabled": False},
    }


@pytest.mark.slow
def test_a_model_learns_from_image_statistics_and_reloads(tmp_path: Path) -> None:
    source = make_copies(tmp_path / "data")
    recipe_file = tmp_path / "copies.yaml"
    recipe_file.write_text(json.dumps(copies_recipe(source)))
    saved = ensayo.run(recipe_file, output=tmp_path / "run", track=False)
    assert saved.metrics["test/accuracy"] >= 0.9

    splits = load_splits(load_recipe(copies_recipe(source)))
    feature = ImageStatsFeature("quality", "image", ImageStatsPreprocessing())
    feature.fit(splits.train["image"].to_list())
    state = json.loads((tmp_path / "run" / "features.json").read_text())
    np.testing.assert_allclose(state["inputs"]["quality"]["center"], feature.center)  # fitted on the training rows only
    encoded = feature.transform(splits.train["image"].to_list())
    np.testing.assert_allclose(encoded[:, :-1].mean(axis=0), 0, atol=1e-5)
    # the pipeline's one pass over the training files gives what fitting and then encoding give
    once = ImageStatsFeature("quality", "image", ImageStatsPreprocessing())
    np.testing.assert_array_equal(once.fit_transform(splits.train["image"].to_list()), encoded)
    np.testing.assert_array_equal(once.center, feature.center)

    table = pl.read_csv(source).head(6).with_columns(pl.format(f"{source.parent}/{{}}", "image").alias("image"))
    np.testing.assert_allclose(SavedRun.load(tmp_path / "run").predict_proba(table), saved.predict_proba(table),
                               rtol=1e-5)
    report = explore_report(copies_recipe(source), tmp_path)
    assert "medians of each statistic" in report and "| jpeg_quality | 65 | 40 | 90 |" in report


def test_unreadable_files_and_unknown_statistics_are_named(tmp_path: Path) -> None:
    source = make_copies(tmp_path / "data", rows=30)
    (source.parent / "images" / "4.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(DataError, match="4.jpg"):
        load_splits(load_recipe({**copies_recipe(source), "data": {"source": str(source), "bad_rows": "fail"}}))
    splits = load_splits(load_recipe(copies_recipe(source, missing="zero")))
    assert len(splits.report.kept_without_file) == 1
    table = pl.concat([splits.train, splits.validation, splits.test])
    feature = ImageStatsFeature("quality", "image", ImageStatsPreprocessing(missing="zero", stats=["sharpness"]))
    encoded = feature.fit(table["image"].to_list()).transform(table["image"].to_list())
    assert encoded.shape == (30, 2) and encoded[:, 1].sum() == 1 and encoded[encoded[:, 1] == 1, 0] == 0
    with pytest.raises(RecipeError, match="blurriness"):
        load_recipe(copies_recipe(source, stats=["sharpness", "blurriness"]))
    with pytest.raises(RecipeError, match="each statistic once"):
        load_recipe(copies_recipe(source, stats=["noise", "noise"]))
