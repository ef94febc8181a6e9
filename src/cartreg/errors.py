"""One exception tree. Bad *data* never raises: it becomes a finding.

Exceptions are for input the toolkit cannot use at all (a broken schema, mapping or rule file,
a missing input file). Each renders as one line: what, where, and how to fix.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from pathlib import Path

from cartreg.redact import redact_text

# What Python's zipfile raises for a damaged archive (workbooks, portal uploads): a bad header
# or CRC, a cut stream, a "version needed" or compression method it does not implement. An
# entry read from an open archive raises the first group; opening it, any of them.
ZIP_ENTRY_DAMAGE = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError)
ZIP_DAMAGE = (*ZIP_ENTRY_DAMAGE, OSError, ValueError)

# The longest line the CLI prints for an error (the exit-code contract in cli/main.py).
MESSAGE_LIMIT = 400  # room for what, where and how to fix; paths are shortened first
_UNCAPPED = 10_000  # an error's own text: quoted values are still cut short
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_PATH = re.compile(r"(?<!\S)(?:[A-Za-z]:)?[/\\][^\s:'\"()]+")


class CartregError(Exception):
    """Base class. ``str(err)`` is the one-line message shown to users (CLI exit code 2)."""

    def __init__(self, message: str, *, where: str = "", hint: str = "") -> None:
        # Messages may quote what a parser saw: identifier-looking parts are masked and
        # echoed records cut short (see cartreg.redact). The length is left to the one line
        # the CLI prints (console_line), which shortens paths before it cuts anything.
        self.message = redact_text(message, limit=_UNCAPPED)
        self.where = where
        self.hint = redact_text(hint, limit=_UNCAPPED)
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text = f"{text} ({self.hint})"
        return " ".join(text.split())


class ConfigError(CartregError):
    """A schema, vocabulary, mapping or rule file is unusable.

    ``where`` is ``file`` or ``file: key.path`` so the user can go straight to the problem.
    """

    def __init__(self, message: str, *, path: Path | str, key: str = "", hint: str = "") -> None:
        self.path = str(path)
        self.key = key
        where = f"{self.path}: {key}" if key else self.path
        super().__init__(message, where=where, hint=hint)


class InputError(CartregError):
    """An input file or folder is missing, unreadable or not of a supported kind."""


def did_you_mean(name: str, candidates: list[str] | tuple[str, ...] | set[str]) -> str:
    """A "did you mean" hint for a misspelt name, or an empty string if nothing is close."""
    import difflib

    close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else ""


def console_line(text: str, *, suffix: str = "", limit: int = MESSAGE_LIMIT) -> str:
    """``text + suffix`` as one printable line of at most ``limit`` characters.

    Whitespace runs become one space and control characters (a header holding an escape
    sequence) are dropped. A longer text first has its long paths cut to their last two
    parts (``…/site/mapping.yaml``), then loses its middle, not its ends: the start says
    where, the end usually says how to fix it.
    """
    line = " ".join(_CONTROL.sub(" ", text).split())
    room = max(limit - len(suffix), 20)
    if len(line) > room:
        # Long folder paths first: the file's name and its folder say where.
        line = _PATH.sub(_short_path, line)
    if len(line) > room:
        head = (room - 1) * 2 // 3
        line = f"{line[:head]}…{line[len(line) - (room - 1 - head) :]}"
    return line + suffix


def _short_path(match: re.Match[str]) -> str:
    path = match.group(0)
    parts = re.split(r"[/\\]", path)
    return path if len(parts) <= 3 else "…/" + "/".join(parts[-2:])
