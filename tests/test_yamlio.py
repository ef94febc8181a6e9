"""Safe YAML loading: what a hand-written configuration file may not do."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cartreg.errors import ConfigError
from cartreg.yamlio import load_yaml, parse_yaml


def alias_bomb(levels: int) -> str:
    """A "billion laughs": each level lists the previous one nine times (9**levels leaves)."""
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\ndescription: *l{levels - 1}\n"


def test_an_alias_bomb_is_refused_before_it_is_built() -> None:
    # Built, it is a few objects; but every reader that walks or prints it (a validation
    # message quoting the value, str() of a key) expands it: 9**9 leaves took minutes and GBs.
    start = time.monotonic()
    with pytest.raises(ConfigError, match="aliases expand to more than"):
        parse_yaml(alias_bomb(9), Path("m.yaml"))
    assert time.monotonic() - start < 5


def test_an_alias_that_contains_itself_is_refused() -> None:
    with pytest.raises(ConfigError, match="refers to itself"):
        parse_yaml("a: &a [1, *a]\n", Path("m.yaml"))


def test_ordinary_anchors_and_large_files_load() -> None:
    text = "base: &b {x: 1, y: [1, 2, 3]}\none: *b\ntwo: *b\n"
    assert parse_yaml(text, Path("m.yaml")) == {
        "base": {"x": 1, "y": [1, 2, 3]},
        "one": {"x": 1, "y": [1, 2, 3]},
        "two": {"x": 1, "y": [1, 2, 3]},
    }
    # Size alone is no bomb: a long link file has hundreds of thousands of values.
    many = "links:\n" + "".join(f"  - {{key_a: A-{i}, key_b: B-{i}}}\n" for i in range(60_000))
    assert len(parse_yaml(many, Path("links.yaml"))["links"]) == 60_000


@pytest.mark.parametrize(
    "raw", ["site_id: CAFÉ\n".encode("latin-1"), "site_id: X\n".encode("utf-16")]
)
def test_a_file_not_saved_as_utf8_says_how_to_fix_it(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "m.yaml"
    path.write_bytes(raw)
    with pytest.raises(ConfigError) as caught:
        load_yaml(path)
    message = str(caught.value)
    assert "not UTF-8 text" in message and "save it as UTF-8" in message
    assert "codec" not in message
