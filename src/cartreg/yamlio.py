"""Safe YAML loading that refuses duplicate keys and names the file in every error."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from cartreg.errors import ConfigError

# The C loader is several times faster (rule catalogs are ~80 files); both are "safe" loaders.
_SafeBase: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeySafeLoader(_SafeBase):  # type: ignore[valid-type,misc]
    """Safe loader that rejects a mapping with the same key twice (PyYAML keeps the last)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            # "? [a, b] : c": a list or mapping as a key, which no cartreg file uses.
            line = key_node.start_mark.line + 1
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"a key must be a plain name, not a list or mapping (line {line})",
                key_node.start_mark,
            )
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            line = key_node.start_mark.line + 1
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}' (line {line})", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeySafeLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
)


def load_yaml(path: Path) -> Any:
    """Parse a YAML file safely (no Python object tags), raising ConfigError on any problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", path=path, hint="check the path") from None
    except UnicodeDecodeError as exc:
        # Python's own text ("'utf-8' codec can't decode ...") names no remedy.
        raise ConfigError(
            f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})",
            path=path,
            hint="save it as UTF-8 in the editor",
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc}", path=path) from None
    return parse_yaml(text, path)


# Values that aliases may add to a document beyond those written in it. Anchors save repeating
# a block a few times; a "billion laughs" (each level aliasing the previous one nine times) is a
# few hundred bytes whose values every walk over it (a check, a message quoting it) expands.
MAX_ALIAS_VALUES = 100_000


def _expanded_size(root: yaml.Node) -> tuple[int, int]:
    """(values with every alias expanded, distinct values) of a composed document.

    Raises ValueError for an alias inside its own anchor (a structure that contains itself).
    Iterative, with each node's size computed once: linear in the distinct nodes.
    """
    size: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            active.discard(key)
            children = _children(node)
            size[key] = 1 + sum(size[id(c)] for c in children)
            continue
        if key in size:
            continue
        if key in active:
            raise ValueError(node.start_mark.line + 1)
        active.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in active:
                raise ValueError(child.start_mark.line + 1)
            if id(child) not in size:
                stack.append((child, False))
    return size[id(root)], len(size)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def parse_yaml(text: str, path: Path) -> Any:
    """:func:`load_yaml` of text already read from ``path`` (named in errors)."""
    loader = _UniqueKeySafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        # Only an alias (written with '*') can repeat a value: most files skip the walk.
        try:
            expanded, distinct = _expanded_size(node) if "*" in text else (0, 0)
        except ValueError as exc:
            raise ConfigError(
                "an alias refers to itself (a structure that contains itself)",
                path=path,
                key=f"line {exc.args[0]}",
                hint="write the values out instead of the alias",
            ) from None
        if expanded - distinct > MAX_ALIAS_VALUES:
            raise ConfigError(
                f"aliases expand to more than {MAX_ALIAS_VALUES:,} values ({distinct:,} written)",
                path=path,
                hint="write the values out; anchors (&) and aliases (*) may only repeat "
                "small blocks",
            )
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            f"invalid YAML: {problem}", path=path, key=where, hint="fix the YAML syntax"
        ) from None
    finally:
        loader.dispose()


def entries(
    raw: Any, *, path: Path | str, section: str, allowed: set[str], noun: str
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """The items of a YAML list (bare, or under ``section``) as (key path, mapping) pairs.

    Checks a shape shared by several files (waivers, overrides, rule examples): a list of
    mappings whose keys are all in ``allowed``. Problems raise ConfigError naming file and key.
    """
    items = raw.get(section) if isinstance(raw, Mapping) else raw
    if not isinstance(items, list):
        raise ConfigError(f"expected a list of {noun}s under '{section}'", path=path, key=section)
    for i, item in enumerate(items):
        key = f"{section}[{i}]"
        if not isinstance(item, Mapping):
            raise ConfigError(f"a {noun} must be a mapping", path=path, key=key)
        unknown = set(item) - allowed
        if unknown:
            raise ConfigError(
                f"unknown key '{sorted(unknown)[0]}'",
                path=path,
                key=key,
                hint=f"allowed: {', '.join(sorted(allowed))}",
            )
        yield key, item
