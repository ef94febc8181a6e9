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
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read file: {exc}", path=path) from None
    return parse_yaml(text, path)


def parse_yaml(text: str, path: Path) -> Any:
    """:func:`load_yaml` of text already read from ``path`` (named in errors)."""
    try:
        return yaml.load(text, Loader=_UniqueKeySafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            f"invalid YAML: {problem}", path=path, key=where, hint="fix the YAML syntax"
        ) from None


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
