"""Options and helpers shared by several commands."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    import polars as pl

    from cartreg.cdm import CDM
    from cartreg.ingest import IngestResult
    from cartreg.progress import OnStep, Step

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


def registry_option() -> Callable[[F], F]:
    """The shared ``--registry`` option of the registry and queries commands."""
    option: Callable[[F], F] = click.option(
        "--registry",
        "registry_path",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="CARTREG_REGISTRY",
        default=Path("registry.duckdb"),
        show_default=True,
        help="Registry file (default: $CARTREG_REGISTRY or registry.duckdb).",
    )
    return option


def lock_option() -> Callable[[F], F]:
    """The shared ``--lock-timeout`` option of commands that open the registry."""
    option: Callable[[F], F] = click.option(
        "--lock-timeout",
        type=click.FloatRange(min=0),
        default=30.0,
        show_default=True,
        help="Seconds to wait for another process using the registry.",
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

    out = Console(stderr=stderr, highlight=False, soft_wrap=False)
    # Piped or redirected, lines of text stay whole: a key or a path split at column 80
    # defeats grep. On a terminal, text wraps at its width.
    if not out.is_terminal:
        out.soft_wrap = True
    return out


def submission_arguments(fn: F) -> F:
    """SUBMISSION_DIR, --mapping, --out and --partition-mb: shared by the commands that ingest
    a submission."""
    fn = click.option(
        "--partition-mb",
        type=click.FloatRange(min=0),
        default=256,
        show_default=True,
        help=(
            "Harmonize a CSV source larger than this many megabytes in ranges of patients, one "
            "after the other, to bound memory (0: always read sources whole)."
        ),
    )(fn)
    fn = click.option(
        "--out",
        "out_dir",
        type=click.Path(file_okay=False, path_type=Path),
        required=True,
        help="Output folder (tables/, quarantine/, manifest.json, findings.json).",
    )(fn)
    fn = click.option(
        "--mapping",
        "mapping_path",
        type=click.Path(dir_okay=False, path_type=Path),
        required=True,
        help="The site's mapping YAML.",
    )(fn)
    decorated: F = click.argument("submission_dir", type=click.Path(path_type=Path))(fn)
    return decorated


def run_ingest(
    submission_dir: Path,
    mapping_path: Path,
    out_dir: Path,
    cdm: CDM,
    *,
    quiet: bool = False,
    partition_mb: float = 256,
) -> IngestResult:
    """Ingest with a live progress line on a terminal, then one reconciliation line per source.

    Logs and pipes get the summary lines, and how a large submission was read; ``quiet``
    prints nothing.
    """
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from cartreg.ingest import ingest_submission

    err = console(stderr=True)
    if quiet or not err.is_terminal:

        def note(message: str) -> None:
            if message.startswith(("splitting", "reading the submission whole")):
                err.print(message)

        result = ingest_submission(
            submission_dir,
            mapping_path,
            out_dir,
            cdm=cdm,
            progress=None if quiet else note,
            partition_mb=partition_mb,
        )
    else:
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        ) as progress:
            task = progress.add_task("ingesting", total=None)
            result = ingest_submission(
                submission_dir,
                mapping_path,
                out_dir,
                cdm=cdm,
                progress=lambda message: progress.update(task, description=message),
                partition_mb=partition_mb,
            )
    if not quiet:
        for source in result.manifest["sources"]:
            err.print(
                f"{source['file']}: {source['rows_read']} rows read, "
                f"{source['rows_harmonized']} harmonized, {source['rows_quarantined']} quarantined"
            )
    return result


_STAGE_LABELS = {"schema": "schema checks (tables)", "rules": "data-quality rules"}


@contextmanager
def validation_progress(quiet: bool = False) -> Iterator[OnStep | None]:
    """A bar per validation stage (tables checked, rules run, with counts) on a terminal;
    ``None`` (nothing shown) in pipes and logs, or when ``quiet``."""
    err = console(stderr=True)
    if quiet or not err.is_terminal:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        TextColumn("{task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[item]}"),
        console=err,
        transient=True,
    ) as progress:
        tasks = {
            stage: progress.add_task(label, total=None, item="")
            for stage, label in _STAGE_LABELS.items()
        }

        def on_step(step: Step) -> None:  # called from the schema and the rules threads
            task = tasks.get(step.stage)
            if task is not None:
                progress.update(task, completed=step.done, total=step.total, item=step.item)

        yield on_step
