"""Where the CDM schemas and rules live.

A consortium can point cartreg at its own copy of ``schemas/`` (``--schemas DIR`` or the
``CARTREG_SCHEMAS`` environment variable) without touching code.
"""

from __future__ import annotations

import os
from pathlib import Path

SCHEMAS_ENV = "CARTREG_SCHEMAS"
RULES_ENV = "CARTREG_RULES"

_PACKAGE_DIR = Path(__file__).resolve().parent


def _bundled(name: str) -> Path:
    installed = _PACKAGE_DIR / "_data" / name  # wheel install (hatch force-include)
    if installed.is_dir():
        return installed
    return _PACKAGE_DIR.parent.parent / name  # source checkout / editable install


def schemas_dir(override: Path | str | None = None) -> Path:
    """The schemas folder: explicit override, then $CARTREG_SCHEMAS, then the bundled copy."""
    if override is not None:
        return Path(override)
    env = os.environ.get(SCHEMAS_ENV)
    return Path(env) if env else _bundled("schemas")


def rules_dir(override: Path | str | None = None) -> Path:
    """The rules folder: explicit override, then $CARTREG_RULES, then the bundled copy."""
    if override is not None:
        return Path(override)
    env = os.environ.get(RULES_ENV)
    return Path(env) if env else _bundled("rules")


def repo_root() -> Path:
    """Root of a source checkout (used for docs and sample data paths in a checkout)."""
    return _PACKAGE_DIR.parent.parent


def endpoints_dir(override: Path | str | None = None) -> Path:
    """The endpoint declarations folder: explicit override, then the bundled copy."""
    if override is not None:
        return Path(override)
    return _bundled("endpoints")
