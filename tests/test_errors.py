"""One-line error messages (the CLI's exit-code contract prints them)."""

from __future__ import annotations

from cartreg.errors import MESSAGE_LIMIT, console_line


def test_a_message_becomes_one_printable_line() -> None:
    assert console_line("bad\n  value\x1b[31m here\r\n") == "bad value [31m here"


def test_long_paths_are_cut_before_the_message_is() -> None:
    path = "/tmp/" + "/".join(["a-long-folder"] * 40) + "/site/mapping.yaml"
    line = console_line(f"{path}: sources.x.file: 'x.csv' is outside the submission folder")
    assert line == "…/site/mapping.yaml: sources.x.file: 'x.csv' is outside the submission folder"


def test_a_long_message_keeps_its_start_and_its_hint() -> None:
    line = console_line("where: " + "w" * 400 + " (how to fix)", suffix=" (report it)")
    assert len(line) == MESSAGE_LIMIT
    assert line.startswith("where: w") and line.endswith("w (how to fix) (report it)")
    assert "…" in line
