"""Numbers, categories and images together, with a target derived from the table (the POI workload)."""

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from helpers.data import make_pois, poi_recipe
from helpers.training import explore_report
from typer.testing import CliRunner

import ensayo
from ensayo.cli import app
from ensayo.data import LINE, DataError, DeriveError, load_splits, parse_expression
from ensayo.features.category import CategoryFeature, CategoryPreprocessing
from ensayo.features.image import (
    EfficientNetConfig,
    EfficientNetLite0Encoder,
    ImageFeature,
    ImagePreprocessing,
    lite0_weights_path,
)
from ensayo.features.number import NumberFeature, NumberPreprocessing
from ensayo.models import load_recipe
from ensayo.recipe import RecipeError
from ensayo.runs import SavedRun
from ensayo.training import encode_split, make_optimizers, split_parameters


@pytest.fixture
def pois(tmp_path: Path) -> Path:
    return make_pois(tmp_path / "poi")


def test_expressions_are_parsed_never_evaluated() -> None:
    table = pl.DataFrame({"Likes": ["3"], "Bookmarks": ["2"], "Dislikes": ["1"], "Visits": ["10"], "tier": ["2"]})
    seed = parse_expression("((Likes * Bookmarks**2 - Dislikes) / Visits) * (1 / tier)", table.columns, "derive.0")
    assert table.select(seed).item() == pytest.approx(((3 * 4 - 1) / 10) * 0.5)
    assert table.select(parse_expression("log1p(Likes) - -abs(Dislikes)", table.columns, "d")).item() == \
        pytest.approx(np.log1p(3) + 1)
    for bad, message in (("__import__('os').system('true')", "not allowed"), ("Likes.real", "not allowed"),
                         ("Like * 2", "did you mean 'Likes'"), ("Likes +", "cannot parse"),
                         ("[1, 2]", "not allowed")):
        with pytest.raises(DeriveError, match=message):
            parse_expression(bad, table.columns, "derive.0")


@pytest.mark.slow
def test_bins_are_fitted_on_training_rows_and_saved(pois: Path, tmp_path: Path) -> None:
    recipe = load_recipe(poi_recipe(pois))
    splits = load_splits(recipe)
    train_values = splits.train["engagement"].to_numpy()
    expected = np.quantile(train_values, [1 / 3, 2 / 3])
    np.testing.assert_allclose(splits.bins.edges["level"], expected)
    assert set(splits.test["level"].to_list()) <= {"low", "medium", "high"}
    ids = [set(part["id"].to_list()) for _, part in splits.items()]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])

    saved = ensayo.run(recipe, output=tmp_path / "run", track=False)
    state = json.loads((tmp_path / "run" / "features.json").read_text())
    np.testing.assert_allclose(state["derived"]["level"], expected)
    assert saved.metrics["test/accuracy"] >= 0.9
    # a new labelled file is binned with the saved edges, not with its own quantiles
    new = tmp_path / "new.csv"
    pl.read_csv(pois).filter(pl.col("Likes") >= 50).write_csv(new)
    (tmp_path / "images").symlink_to(pois.parent / "images")
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "run"), "--input", str(new)])
    assert result.exit_code == 0, result.output
    assert SavedRun.load(tmp_path / "run").bins.edges["level"] == state["derived"]["level"]


def test_division_by_zero_is_a_bad_row_and_leakage_is_warned(pois: Path, tmp_path: Path) -> None:
    table = pl.read_csv(pois, infer_schema_length=0)
    table.with_columns(pl.when(pl.int_range(pl.len()) == 4).then(pl.lit("0")).otherwise(pl.col("Visits"))
                       .alias("Visits")).write_csv(pois)
    splits = load_splits(load_recipe(poi_recipe(pois)))
    assert [b.line for b in splits.report.bad_rows] == [6] and "engagement" in splits.report.bad_rows[0].reason

    raw = poi_recipe(pois)
    raw["inputs"].append({"name": "Likes", "type": "number"})
    raw["model"]["encoders"]["Likes"] = {"type": "passthrough"}
    recipe = tmp_path / "leaky.yaml"
    recipe.write_text(json.dumps(raw))
    result = CliRunner().invoke(app, ["validate", str(recipe)])
    assert result.exit_code == 0 and "input 'Likes' feeds the target 'level'" in result.output


def test_auxiliary_targets_train_a_side_head_that_prediction_does_not_need(pois: Path, tmp_path: Path) -> None:
    table = pl.read_csv(pois, infer_schema_length=0)
    # Bookmarks: three times the Likes, missing in every seventh row (those rows add nothing to its loss)
    bookmarks = [str(3 * int(likes)) if i % 7 else "" for i, likes in enumerate(table["Likes"].to_list())]
    table = table.with_columns(pl.Series("Bookmarks", bookmarks))
    table.write_csv(pois)
    raw = poi_recipe(pois)
    raw["derive"].append({"name": "log_likes", "expression": "log(Likes)"})
    raw["output"]["auxiliary"] = [{"column": "log_likes", "weight": 1.0}, {"column": "Bookmarks"}]
    # keep the last epoch: validation accuracy peaks (and would pick its epoch) before the side head settles
    raw["train"]["monitor"] = "train/loss"
    recipe = load_recipe(raw)
    (tmp_path / "aux.yaml").write_text(json.dumps(raw))
    result = CliRunner().invoke(app, ["validate", str(tmp_path / "aux.yaml")])
    assert result.exit_code == 0 and "auxiliary targets log_likes, Bookmarks" in " ".join(result.output.split())
    saved = ensayo.run(recipe, output=tmp_path / "run", track=False)
    assert np.isfinite(saved.metrics["train/loss"]) and saved.metrics["test/accuracy"] >= 0.9
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    side_losses = [epoch["train/auxiliary_loss"] for epoch in history]
    assert side_losses[-1] < 0.5 * side_losses[0]  # logged apart: train/loss is the label's, as val/loss is

    # the side head learned both targets: on the test rows its outputs follow them
    splits = load_splits(recipe)
    test = splits.test
    encoded = encode_split(saved.model.features, test, np.zeros(test.height, dtype=np.int64))
    saved.model.network.eval()
    with torch.no_grad():
        _, predicted = saved.model.network(encoded.batch(np.arange(test.height), torch.device("cpu")), auxiliary=True)
    for column, target in enumerate(("log_likes", "Bookmarks")):
        values = test[target].cast(pl.Float64, strict=False).to_numpy()
        known = ~np.isnan(values)
        assert np.corrcoef(predicted[known, column].numpy(), values[known])[0, 1] > 0.8, target

    # a reloaded run predicts the same from rows that have no target columns at all
    rows = table.drop("Likes", "Bookmarks").head(6).with_columns(
        pl.col("image").map_elements(lambda p: str(pois.parent / p), return_dtype=pl.String))
    np.testing.assert_allclose(SavedRun.load(tmp_path / "run").predict_proba(rows), saved.predict_proba(rows),
                               rtol=1e-5)

    line = int(splits.train[LINE][0])  # a training row: only those are learned from
    table.with_columns(pl.when(pl.int_range(pl.len()) == line - 2).then(pl.lit("many"))
                       .otherwise(pl.col("Bookmarks")).alias("Bookmarks")).write_csv(pois)
    with pytest.raises(DataError, match=rf"pois.csv:{line}: output.auxiliary column 'Bookmarks' holds 'many'"):
        ensayo.run(recipe, output=tmp_path / "bad", track=False)
    misspelt = {**raw, "output": {"column": "level", "auxiliary": [{"column": "Bokmarks"}]}}
    with pytest.raises(DataError, match="pois.csv: output.auxiliary column 'Bokmarks' is not in the data"):
        ensayo.run(misspelt, output=tmp_path / "misspelt", track=False)
    for change, message in (({"model": {"type": "tfidf_linear"}}, "has no shared layers"),
                            ({"output": {"column": "level", "auxiliary": [{"column": "xps"}]}}, "also inputs")):
        with pytest.raises(RecipeError, match=message):
            load_recipe({**raw, **change})


def test_number_and_category_preprocessing_fit_on_training_values() -> None:
    number = NumberFeature("n", "n", NumberPreprocessing(impute="median", scaling="standard")).fit(["1", "2", "3", ""])
    encoded = number.transform(["2", None, "oops", "5"])
    assert encoded[:, 0].tolist()[:3] == pytest.approx([0.0, 0.0, 0.0])  # the median, imputed
    assert encoded[:, 1].tolist() == [0.0, 1.0, 1.0, 0.0]  # missing flags
    assert encoded[3, 0] == pytest.approx((5 - 2) / np.std([1, 2, 3, 2]))
    logged = NumberFeature("n", "n", NumberPreprocessing(scaling="log", clip=None)).fit(["0", "1000"])
    assert logged.transform(["0", "1000"])[:, 0].tolist() == pytest.approx([-1.0, 1.0])

    categories = CategoryFeature("c", "c", CategoryPreprocessing(multi=True, min_count=2))
    categories.fit(["['Arte', 'Museo']", "['Arte']", "['Museo', 'Rare']", "[]"])
    assert categories.values == ["<unknown>", "Arte", "Museo"]
    encoded = categories.transform(["['Arte', 'Nuevo']", "[]", '["Museo"]'])
    assert encoded.tolist() == [[1, 1, 0], [0, 0, 0], [0, 0, 1]]


def test_unreadable_images_are_skipped_or_kept_with_a_flag(pois: Path, tmp_path: Path) -> None:
    (pois.parent / "images" / "3.png").write_bytes(b"not a png")
    (pois.parent / "images" / "7.png").unlink()
    with pytest.raises(DataError, match="3.png"):
        load_splits(load_recipe(poi_recipe(pois, data={"source": str(pois), "bad_rows": "fail"})))
    splits = load_splits(load_recipe(poi_recipe(pois)))
    assert {b.line for b in splits.report.bad_rows} == {5, 9}
    assert "not a readable image" in str(splits.report.bad_rows[0]) or "not found" in str(splits.report.bad_rows[0])

    raw = poi_recipe(pois)
    raw["inputs"][0]["preprocessing"]["missing"] = "zero"
    splits = load_splits(load_recipe(raw))
    assert not splits.report.bad_rows and len(splits.report.kept_without_file) == 2
    feature = ImageFeature("photo", "image", ImagePreprocessing(size=32, missing="zero"))
    table = pl.concat([splits.train, splits.validation, splits.test])
    encoded = feature.fit(table["image"].to_list()).transform(table["image"].to_list())
    once = ImageFeature("photo", "image", ImagePreprocessing(size=32, missing="zero"))
    read_once = once.fit_transform(table["image"].to_list())  # one read: the same pixels and statistics
    assert np.array_equal(read_once["pixels"], encoded["pixels"]) and (once.mean, once.std) == (feature.mean,
                                                                                                 feature.std)
    missing = np.flatnonzero(encoded["missing"])
    assert len(missing) == 2
    batch = feature.collate(encoded, missing)
    assert torch.all(batch["pixels"] == 0) and torch.all(batch["missing"] == 1)


@pytest.mark.slow
def test_fused_model_learns_reloads_and_explores(pois: Path, tmp_path: Path) -> None:
    recipe_file = tmp_path / "pois.yaml"
    recipe_file.write_text(json.dumps(poi_recipe(pois)))
    saved = ensayo.run(recipe_file, output=tmp_path / "run", track=False)
    assert saved.metrics["test/accuracy"] >= 0.9
    table = pl.read_csv(pois, infer_schema_length=0).head(6).with_columns(
        pl.col("image").map_elements(lambda p: str(pois.parent / p), return_dtype=pl.String))
    np.testing.assert_allclose(SavedRun.load(tmp_path / "run").predict_proba(table), saved.predict_proba(table),
                               rtol=1e-5)
    report = explore_report(poi_recipe(pois), tmp_path)
    assert "bin edges (fitted on train)" in report and "32 x 32" in report
    for plot in ("level_edges.png", "correlations.png", "photo_examples.png", "class_balance.png"):
        assert (tmp_path / "report" / plot).stat().st_size > 1000, plot


def test_efficientnet_freezing_and_learning_rates(monkeypatch: pytest.MonkeyPatch) -> None:
    feature = ImageFeature("photo", "image", ImagePreprocessing(size=32, normalize="imagenet"))
    encoder = EfficientNetLite0Encoder(feature, EfficientNetConfig(type="efficientnet_lite0", trainable_blocks=2,
                                                                   lr_scale=0.1))
    trainable = {name.split(".")[0] + ("." + name.split(".")[1] if name.startswith("_blocks") else "")
                 for name, p in encoder.named_parameters() if p.requires_grad}
    assert trainable == {"_blocks.14", "_blocks.15", "_conv_head", "_bn1"}
    encoder.train()
    assert not encoder._blocks[0]._bn1.training and encoder._blocks[15]._bn1.training
    head = torch.nn.Linear(encoder.output_dim, 3)
    model = torch.nn.ModuleDict({"encoder": encoder, "head": head})
    from ensayo.recipe import TrainConfig

    optimizer, = make_optimizers(*split_parameters(model), TrainConfig(lr=1e-3))
    assert sorted(group["lr"] for group in optimizer.param_groups) == pytest.approx([1e-4, 1e-3])
    pixels = torch.randn(2, 3, 32, 32)
    out = encoder({"pixels": pixels, "missing": torch.tensor([0.0, 1.0])})
    assert out.shape == (2, 1281) and out[:, -1].tolist() == [0.0, 1.0]
    # the ImageNet weights were loaded: the stem is not at its random start
    stem = torch.load(lite0_weights_path(), weights_only=True)["_conv_stem.weight"]
    torch.testing.assert_close(encoder._conv_stem.weight, stem)


def test_a_truncated_efficientnet_keeps_its_first_blocks_and_pools_their_spread(tmp_path: Path) -> None:
    feature = ImageFeature("photo", "image", ImagePreprocessing(size=32, normalize="imagenet"))
    config = EfficientNetConfig(type="efficientnet_lite0", blocks=5, pool="mean_std", trainable_blocks=2)
    encoder = EfficientNetLite0Encoder(feature, config)
    assert len(encoder._blocks) == 5 and not hasattr(encoder, "_conv_head")
    assert encoder.output_dim == 2 * 40 + 1  # block 4 has 40 channels: their means and spreads, the flag
    state = torch.load(lite0_weights_path(), weights_only=True)
    torch.testing.assert_close(encoder._blocks[4]._project_conv.weight, state["_blocks.4._project_conv.weight"])
    assert [b._depthwise_conv.weight.requires_grad for b in encoder._blocks] == [False] * 3 + [True] * 2
    encoder.eval()
    flat = torch.full((1, 3, 32, 32), 0.5)
    textured = flat + torch.randn(1, 3, 32, 32)
    out = encoder({"pixels": torch.cat([flat, textured]), "missing": torch.zeros(2)})
    spread = out[:, 40:80]
    assert spread[0].abs().max() < spread[1].abs().max()  # a flat image has (almost) no spatial spread
    encoder.train()
    assert encoder({"pixels": textured, "missing": torch.zeros(1)}).shape == (1, 81)  # a last batch of one row

    with pytest.raises(ValueError, match="trainable_blocks: 6 is not between 0 and the 5 blocks used"):
        EfficientNetConfig(type="efficientnet_lite0", blocks=5, trainable_blocks=6)
    broken = tmp_path / "weights.pth"
    torch.save({k: v for k, v in state.items() if not k.startswith("_blocks.3.")}, broken)
    with pytest.raises(ValueError, match=r"weights.pth: no _blocks\.3\."):
        EfficientNetLite0Encoder(feature, config.model_copy(update={"weights": str(broken)}))


@pytest.mark.slow
def test_a_saved_pretrained_run_needs_no_weights_package(pois: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    raw = poi_recipe(pois, inputs=[{"name": "photo", "type": "image", "column": "image",
                                    "preprocessing": {"size": 32, "normalize": "imagenet"}}],
                     encoders={"photo": {"type": "efficientnet_lite0", "trainable_blocks": 1}})
    raw["train"]["epochs"] = 1
    saved = ensayo.run(load_recipe(raw), output=tmp_path / "run", track=False)

    def unavailable() -> Path:
        raise FileNotFoundError("no weights package")

    monkeypatch.setattr("ensayo.features.image.encoders.lite0_weights_path", unavailable)
    table = pl.read_csv(pois, infer_schema_length=0).head(4).with_columns(
        pl.col("image").map_elements(lambda p: str(pois.parent / p), return_dtype=pl.String))
    np.testing.assert_allclose(SavedRun.load(tmp_path / "run").predict_proba(table), saved.predict_proba(table),
                               rtol=1e-4, atol=1e-6)


def test_images_read_on_the_fly_give_the_tensors_kept_in_memory(pois: Path) -> None:
    from ensayo.features.image import ImageFeature, ImagePreprocessing

    paths = sorted(str(p) for p in (pois.parent / "images").glob("*.png"))[:40]
    kept = ImageFeature("photo", "path", ImagePreprocessing(size=32))
    streamed = ImageFeature("photo", "path", ImagePreprocessing(size=32, in_memory=False))
    encoded, lazy = kept.fit_transform(paths), streamed.fit_transform(paths)
    assert lazy.paths == paths and kept.state() == streamed.state()
    index = np.array([3, 1, 30])
    first, second = kept.collate(encoded, index), streamed.collate(lazy, index)
    torch.testing.assert_close(second["pixels"], first["pixels"], rtol=0, atol=0)
