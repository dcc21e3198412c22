"""Every YAML ensayo reads (recipes, overrides, study files, `--grid` values, filters, saved runs' recipes) goes
through one loader: PyYAML's safe one (no tags that build objects), which also refuses a document whose
aliases expand past a bound (a "billion laughs" file of a kilobyte would otherwise grow without end) and a
mapping that gives one key twice (YAML would keep the last and drop the first without a word)."""

from __future__ import annotations

from typing import Any

import yaml

from ensayo.recipe.schema import RecipeError

MAX_NODES = 100_000  # values a document may hold once its aliases are expanded (a large study: a few thousand)


class _BoundedLoader(yaml.SafeLoader):
    def compose_document(self) -> Any:
        node = super().compose_document()
        _check_expansion(node)
        return node

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key, _ in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    if key.value in seen:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"the key {key.value!r} is given twice (first on line "
                            f"{seen[key.value].start_mark.line + 1}); give it once", key.start_mark)
                    seen[key.value] = key
        return super().construct_mapping(node, deep)


def _children(node: Any) -> list[Any]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_expansion(root: Any) -> None:
    """The number of values the document expands to, each node counted once per place it appears (computed once
    per node: a node an alias repeats is not walked again)."""
    if root is None:
        return
    sizes: dict[int, int] = {}
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        children = _children(node)
        if done or not children:
            sizes[id(node)] = 1 + sum(sizes[id(child)] for child in children)
            if sizes[id(node)] > MAX_NODES:  # the first node to pass the bound: where the aliases pile up
                raise yaml.constructor.ConstructorError(
                    None, None, f"its aliases expand to more than {MAX_NODES:,} values (the value here alone to "
                    f"{sizes[id(node)]:,}); write the values out, or use fewer nested aliases", node.start_mark)
            continue
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)


def load_yaml(text: str, source: str) -> Any:
    """The value of a YAML text; anything it cannot be read as is a RecipeError naming `source` and the line."""
    try:
        return yaml.load(text, Loader=_BoundedLoader)
    except yaml.YAMLError as error:
        raise RecipeError(f"{source}: not valid YAML: {_described(error)}") from None


def _described(error: yaml.YAMLError) -> str:
    """A YAML error in one line: what, and on which line and column."""
    if isinstance(error, yaml.MarkedYAMLError):
        where = error.problem_mark or error.context_mark
        what = " ".join(part for part in (error.context, error.problem) if part)
        if "could not determine a constructor for the tag" in what:
            what = f"the tag {what.split('tag ', 1)[1]} is not allowed: ensayo builds no objects from YAML tags"
        return f"{what} (line {where.line + 1}, column {where.column + 1})" if where else what
    return " ".join(str(error).split())
