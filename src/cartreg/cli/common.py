"""Options and helpers shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    import polars as pl

    from cartreg.cdm import CDM

FAIL_ON_CHOICES = ("error", "warning", "info", "never")
F = TypeVar("F", bound=Callable[..., Any])


def fail_on_option(default: str = "error") -> Callable[[F], F]:
    """The shared ``--fail-on`` option (exit code 1 at or above this severity)."""
    option: Callable[[F], F] = click.option(
        "--fail-on",
        type=click.Choice(FAIL_ON_CHOICES),
        default=default,
        show_default=True,
        help="Exit with code 1 when a finding of this severity or worse is reported.",
    )
    return option


def cdm_from_context(ctx: click.Context) -> CDM:
    from cartreg.cdm import load_cdm

    root = ctx.find_root()
    schemas = (root.obj or {}).get("schemas") if root.obj else None
    return load_cdm(schemas)


def exit_code_for(findings: pl.DataFrame, fail_on: str) -> int:
    """0 when nothing reaches ``fail_on``, else 1 (2 is reserved for unusable input)."""
    from cartreg.findings import SEVERITY_ORDER

    if fail_on == "never" or findings.height == 0:
        return 0
    limit = SEVERITY_ORDER[fail_on]
    worst = min(SEVERITY_ORDER.get(s, 9) for s in findings["severity"].unique().to_list())
    return 1 if worst <= limit else 0


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)
