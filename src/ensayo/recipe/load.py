"""Recipe files -> a Recipe: YAML, `${VAR}` paths, `key.path=value` overrides, and error messages that
name every bad key with a did-you-mean hint. What registered types check comes after, in `resolve`."""

from __future__ import annotations

import copy
import difflib
import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ensayo.recipe.safe_yaml import load_yaml
from ensayo.recipe.schema import Recipe, RecipeError, name_of_file


def default_data_dir() -> Path | None:
    """ENSAYO_DATA (a relative one from the working directory, as the shell that set it meant it), else
    ../shared/data when it exists (the layout of a developer checkout)."""
    if env := os.environ.get("ENSAYO_DATA"):
        return Path(env).expanduser().resolve()
    for candidate in (Path.cwd() / "../shared/data", Path(__file__).resolve().parents[3] / "../shared/data"):
        if candidate.is_dir():
            return candidate.resolve()
    return None


_VAR = re.compile(r"\$\{(\w+)\}")


def expand_path(value: str, base: Path | None = None) -> Path:
    """Expand ${ENSAYO_DATA} and other environment variables; relative paths are taken from `base`."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "ENSAYO_DATA":
            data_dir = default_data_dir()
            if data_dir is None:
                raise RecipeError("the recipe uses ${ENSAYO_DATA}, but ENSAYO_DATA is not set "
                                  "and ../shared/data does not exist")
            return str(data_dir)
        if name not in os.environ:
            raise RecipeError(f"the recipe uses ${{{name}}}, which is not set in the environment")
        return os.environ[name]

    path = Path(_VAR.sub(substitute, value)).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    return path




def set_key(raw: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """Set `a.b.c` to `value` in a raw recipe; list items are addressed by index (`inputs.0.name`)."""
    parts = key.strip().split(".")
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            node = _list_item(node, part, key)
            continue
        if part not in node or node[part] is None:
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict | list):
            raise RecipeError(f"{key}: {'.'.join(parts[: depth + 1])} is not a section")
    last = parts[-1]
    if isinstance(node, list):
        node[_index(node, last, key)] = value
    else:
        node[last] = value
    return raw


def _index(items: list[Any], part: str, key: str) -> int:
    if not part.isdigit() or int(part) >= len(items):
        raise RecipeError(f"{key}: {part!r} is not an index of a list of {len(items)}")
    return int(part)


def _list_item(items: list[Any], part: str, key: str) -> Any:
    return items[_index(items, part, key)]


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides, the value read as YAML."""
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"override {item!r} is not of the form key.path=value")
        key, value = item.split("=", 1)
        set_key(raw, key, load_yaml(value, f"override {item!r}") if value != "" else "")
    return raw


def _field_names(model: type[BaseModel] | None, location: tuple[Any, ...]) -> list[str]:
    """The valid keys at `location` inside `model`, for 'did you mean' hints."""
    current: Any = model
    for part in location:
        if isinstance(part, int) or current is None:
            continue
        fields = getattr(current, "model_fields", {})
        if part not in fields:
            return []
        current = _first_model(fields[part].annotation)
    return list(getattr(current, "model_fields", {}))


def _first_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _first_model(arg)
        if found is not None:
            return found
    return None


def error_lines(error: ValidationError, schema: type[BaseModel], prefix: tuple[Any, ...] = ()) -> list[str]:
    lines = []
    for item in error.errors():
        location = tuple(item["loc"])
        path = ".".join(str(p) for p in prefix + location)
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            valid = _field_names(schema, location[:-1])
            close = difflib.get_close_matches(str(location[-1]), valid, n=1, cutoff=0.5)
            message = "unknown key" + (f"; did you mean '{close[0]}'?" if close else "")
            if valid:
                message += f" (valid keys: {', '.join(valid)})"
        elif item["type"] == "value_error":  # our own validators' messages say what they got
            message = message.removeprefix("Value error, ")
        elif "input" in item and item["type"] != "missing":
            message += f" (got {item['input']!r})"
        lines.append(f"  {path or '<root>'}: {message}")
    return lines


def choice_error(path: str, kind: str, value: Any, choices: list[str]) -> str:
    close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"  {path}: unknown {kind} {value!r}{hint} (known: {', '.join(sorted(choices))})"


def read_raw(source: str | Path | dict[str, Any], overrides: list[str] | None = None,
             label: str = "<recipe>") -> tuple[dict[str, Any], str]:
    """The raw mapping of a recipe file (or a copy of a mapping) with `overrides` applied, and its label:
    the file's path, or `label` for a mapping."""
    if isinstance(source, dict):
        raw = copy.deepcopy(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise RecipeError(f"{path}: recipe file not found")
        raw = load_yaml(path.read_text(), str(path)) or {}
        label = str(path)
        if not isinstance(raw, dict):
            raise RecipeError(f"{path}: a recipe must be a mapping of sections, got {type(raw).__name__}")
        raw.setdefault("name", name_of_file(path.stem))
    return apply_overrides(raw, overrides or []), label


def validate_schema(raw: dict[str, Any], label: str) -> Recipe:
    """The recipe's schema alone (no registry): raises RecipeError naming every bad key."""
    try:
        return Recipe.model_validate(raw)
    except ValidationError as exc:
        raise RecipeError("\n".join([f"{label}: the recipe is not valid", *error_lines(exc, Recipe)])) from None


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    return recipe.model_dump(mode="json")


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists of mappings are indexed."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for index, item in enumerate(value):
                flat.update(flatten(item, f"{name}.{index}."))
        else:
            flat[name] = value
    return flat
