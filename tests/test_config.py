import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers.data import recipe_dict

from ensayo.features.text import CnnEncoderConfig, TextPreprocessing
from ensayo.models import load_recipe
from ensayo.recipe import RecipeError, apply_overrides, expand_path, flatten

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def test_bundled_recipes_are_valid() -> None:
    found = sorted(RECIPES.glob("*.yaml"))
    assert len(found) >= 6
    for path in found:
        recipe = load_recipe(path)
        assert recipe.name == path.stem


@pytest.mark.subprocess
def test_bundled_recipes_are_read_and_checked_without_torch() -> None:
    code = ("import sys\nfrom pathlib import Path\nfrom ensayo.models import load_recipe\n"
            f"kinds = {{load_recipe(path).model.type for path in Path({str(RECIPES)!r}).glob('*.yaml')}}\n"
            "print(*sorted(kinds), 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["ensemble", "language_model", "neural", "tfidf_linear", "False"]


def test_each_feature_type_takes_the_schemas_declared_without_torch() -> None:
    from ensayo.features import FEATURE_SCHEMAS, FEATURES

    assert set(FEATURES) == set(FEATURE_SCHEMAS)
    for name, feature in FEATURES.items():
        declared = FEATURE_SCHEMAS[name]
        assert feature.Preprocessing is declared.Preprocessing, name
        assert {kind: encoder.Config for kind, encoder in feature.encoders.items()} == declared.encoders, name
        assert declared.module == feature.__module__, name  # what `feature_type` imports to register the class


# a text with subwords, a list-valued category, a number with a missing value and photos (one unreadable, kept with
# its flag): the feature types that make their batches without torch
COLUMNS = {"text": ["taladro percutor bosch", "zapatillas nike", "taladro"], "category": ["['a', 'b']", "['b']", ""],
           "number": ["1.5", None, "7"]}
OPTIONS = {"text": {"char_ngrams": [3, 4]}, "category": {"multi": True}, "number": {},
           "image": {"size": 8, "normalize": "dataset", "missing": "zero"}, "image_stats": {"missing": "zero"}}
ROWS = [2, 0]


def batches(make: str, columns: dict) -> dict:
    """Each column's feature, fitted, and its batch of rows `ROWS` as lists (`make`: arrays or collate)."""
    import numpy as np

    from ensayo.features import FEATURE_SCHEMAS, build_feature

    found = {}
    for kind, values in columns.items():
        feature = build_feature(kind, kind, kind, FEATURE_SCHEMAS[kind].Preprocessing(**OPTIONS[kind]))
        batch = getattr(feature, make)(feature.fit_transform(values), np.array(ROWS))
        found[kind] = {k: [type(v).__module__, v.tolist()] for k, v in batch.items()} if isinstance(batch, dict) \
            else [type(batch).__module__, batch.tolist()]
    return found


@pytest.mark.subprocess
def test_text_category_number_and_image_inputs_make_their_batches_without_torch(tmp_path: Path) -> None:
    import inspect
    import json

    import numpy as np
    from PIL import Image

    photos = [str(tmp_path / f"{i}.png") for i in range(3)]
    for i, path in enumerate(photos[:2]):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (12, 10, 3), dtype=np.uint8)).save(path)
    Path(photos[2]).write_bytes(b"not a png")
    columns = {**COLUMNS, "image": photos, "image_stats": photos}
    code = (f"import json, sys\nOPTIONS, ROWS = {OPTIONS!r}, {ROWS!r}\n{inspect.getsource(batches)}\n"
            f"print(json.dumps([batches('arrays', {columns!r}), 'torch' in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    arrays, torch_loaded = json.loads(done.stdout)
    assert torch_loaded is False
    tensors = batches("collate", columns)  # what a torch network is given: the same values, as tensors
    assert json.loads(json.dumps(arrays).replace('"numpy"', '"torch"')) == tensors
    assert set(arrays["text"]) == {"ids", "lengths", "sub_ids", "sub_offsets", "sub_counts"}
    assert arrays["image"]["missing"][1] == [1.0, 0.0] and len(arrays["image_stats"][1]) == len(ROWS)


def test_an_encoder_whose_schema_is_not_declared_is_refused_when_registered() -> None:
    from ensayo.features import FEATURE_SCHEMAS, Encoder
    from ensayo.features.text import TextFeature

    class Bigger(CnnEncoderConfig):
        pass

    class Undeclared(Encoder):
        Config = Bigger

    with pytest.raises(TypeError, match="encoder transformer of feature type text is not declared"):
        TextFeature.register_encoder("transformer")(Undeclared)
    with pytest.raises(TypeError, match="encoder cnn of feature type text: its Config is Bigger, but "
                                        "CnnEncoderConfig is declared"):
        TextFeature.register_encoder("cnn")(Undeclared)
    assert TextFeature.encoders["cnn"].Config is CnnEncoderConfig and "transformer" not in TextFeature.encoders
    assert FEATURE_SCHEMAS["text"].encoders["cnn"] is CnnEncoderConfig


def test_plugin_sections_are_typed_by_their_feature(tmp_path: Path) -> None:
    raw = recipe_dict(tmp_path / "x.csv", {"type": "cnn", "filters_count": 7})
    recipe = load_recipe(raw)
    assert isinstance(recipe.inputs[0].preprocessing, TextPreprocessing)
    assert recipe.inputs[0].preprocessing.numbers == "zero"
    assert isinstance(recipe.model.encoders["title"], CnnEncoderConfig)
    assert recipe.model.encoders["title"].filters_count == 7


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda r: r["train"].update(lrr=1), ["train.lrr", "did you mean 'lr'"]),
        (lambda r: r["model"]["encoders"]["title"].update(type="cnn", filter_count=3),
         ["model.encoders.title.filter_count", "did you mean 'filters_count'"]),
        (lambda r: r["inputs"][0]["preprocessing"].update(stemm="es"),
         ["inputs.0.preprocessing.stemm", "did you mean 'stem'"]),
        (lambda r: r["model"]["encoders"]["title"].update(type="cnnn"),
         ["model.encoders.title.type", "did you mean 'cnn'"]),
        (lambda r: r["inputs"][0].update(type="txt"), ["inputs.0.type", "did you mean 'text'"]),
        (lambda r: r["train"].update(epochs=0), ["train.epochs", "greater than or equal to 1", "got 0"]),
        (lambda r: r["data"]["split"].update(test=0.5), ["data.split", "must add up to 1"]),
        (lambda r: r.update(modle={}), ["modle", "did you mean 'model'"]),
    ],
)
def test_bad_recipes_name_the_key(tmp_path: Path, change, expected: list[str]) -> None:
    raw = recipe_dict(tmp_path / "x.csv")
    change(raw)
    with pytest.raises(RecipeError) as caught:
        load_recipe(raw)
    for text in expected:
        assert text in str(caught.value)


def test_an_encoder_for_every_input_is_required(tmp_path: Path) -> None:
    raw = recipe_dict(tmp_path / "x.csv")
    raw["model"]["encoders"] = {}
    with pytest.raises(RecipeError, match="no encoder for inputs"):
        load_recipe(raw)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("data: [unclosed\n")
    with pytest.raises(RecipeError, match="broken.yaml: not valid YAML"):
        load_recipe(broken)


def test_overrides_reach_nested_and_listed_keys(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe_dict(tmp_path / "x.csv")))
    recipe = load_recipe(path, ["train.lr=5e-3", "train.epochs=2", "inputs.0.preprocessing.stem=es",
                                "model.encoders.title.type=cnn", "data.filters=[language == spanish]"])
    assert recipe.train.lr == 5e-3 and recipe.train.epochs == 2
    assert recipe.inputs[0].preprocessing.stem == "es"
    assert recipe.model.encoders["title"].type == "cnn"
    assert recipe.name == "tiny"
    with pytest.raises(RecipeError, match="key.path=value"):
        apply_overrides({}, ["train.lr"])


def test_ensayo_data_expansion(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ENSAYO_DATA", str(tmp_path))
    assert expand_path("${ENSAYO_DATA}/meli/a.csv") == tmp_path / "meli/a.csv"
    assert expand_path("rel.csv", base=tmp_path) == tmp_path / "rel.csv"
    with pytest.raises(RecipeError, match="NOT_SET_ANYWHERE"):
        expand_path("${NOT_SET_ANYWHERE}/x")


def test_relative_ensayo_data_is_taken_from_the_working_directory(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "recipes").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ENSAYO_DATA", "shared/data")  # as `ENSAYO_DATA=shared/data ensayo run recipes/x.yaml`
    assert expand_path("${ENSAYO_DATA}/a.csv", base=tmp_path / "recipes") == tmp_path / "shared" / "data" / "a.csv"


def test_flatten() -> None:
    assert flatten({"a": {"b": 1, "c": [{"d": 2}]}, "e": [1, 2]}) == {"a.b": 1, "a.c.0.d": 2, "e": [1, 2]}
