"""Shared CLI plumbing: the console commands print through."""

from __future__ import annotations

import pytest

from cartreg.cli.common import console


def test_piped_output_keeps_long_lines_whole(capsys: pytest.CaptureFixture[str]) -> None:
    """A coordinator greps saved output: a pseudonym or a path split at column 80 is lost."""
    line = "DUP-64f06feb6ea5: " + "PSN-32aeadff7f723d49e29789c5 (EXCEL_B) ~ " * 4 + "p=1.000"
    console().print(line)
    console(stderr=True).print(line)
    captured = capsys.readouterr()
    assert captured.out == line + "\n"
    assert captured.err == line + "\n"
