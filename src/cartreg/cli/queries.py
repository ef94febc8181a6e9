"""``cartreg queries``: follow findings to the site and back (list, export, import, close,
reopen, history, scorecard, configure, import-waivers)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.markup import escape

from cartreg.cli.common import cdm_from_context, console, lock_option, registry_option

F = TypeVar("F", bound=Callable[..., Any])
STATE_CHOICES = ("open", "answered", "closed", "resolved", "waived", "unobtainable")


def _options(*, write: bool = False) -> Callable[[F], F]:
    """--registry and --lock-timeout (and --actor for commands that change queries)."""

    def decorate(func: F) -> F:
        options = [registry_option(), lock_option()]
        if write:
            options.append(
                click.option(
                    "--actor",
                    default=None,
                    help="Who is recorded in the history (default: $CARTREG_ACTOR or login).",
                )
            )
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def _format_option(choices: tuple[str, ...] = ("text", "json")) -> Callable[[F], F]:
    option: Callable[[F], F] = click.option(
        "--format", "fmt", type=click.Choice(choices), default=choices[0], show_default=True
    )
    return option


def _json(frame: Any) -> str:
    """Rows as JSON; times (UTC) as ISO 8601 with a Z, dates as YYYY-MM-DD."""
    import polars as pl

    frame = frame.with_columns(
        pl.col(pl.Datetime).dt.strftime("%Y-%m-%dT%H:%M:%SZ"), pl.col(pl.Date).cast(pl.String)
    )
    return json.dumps(frame.to_dicts(), indent=2, ensure_ascii=False) + "\n"


@click.group()
def queries() -> None:
    """Queries: follow each finding to the site and back, across submissions.

    Every `registry submit` opens queries for new error and warning findings, resolves those
    whose finding is gone and reopens those whose finding returns. Send the open ones to the
    site with `export`, record its answers with `import`, and close what is correct as it is
    with `close --waive`.
    """


@queries.command("list")
@_options()
@click.option("--site", default=None, help="Only this site.")
@click.option(
    "--state", type=click.Choice(STATE_CHOICES), default=None, help="Only queries in this state."
)
@_format_option()
def list_queries(
    registry_path: Path, lock_timeout: float, site: str | None, state: str | None, fmt: str
) -> None:
    """List queries with their state, place and latest value."""
    import polars as pl

    from cartreg.queries.lifecycle import site_queries
    from cartreg.registry.store import open_registry

    with open_registry(registry_path, lock_timeout=lock_timeout) as reg:
        frame = site_queries(reg, site.upper() if site else None)
    if state in ("open", "answered", "closed"):
        frame = frame.filter(pl.col("state") == state)
    elif state is not None:
        frame = frame.filter((pl.col("state") == "closed") & (pl.col("resolution") == state))
    if fmt == "json":
        click.echo(_json(frame), nl=False)
        return
    if frame.height == 0:
        console().print("no queries")
        return
    from rich.table import Table

    table = Table(title=f"Queries ({frame.height})")
    table.add_column("query", no_wrap=True)
    table.add_column("state")
    table.add_column("patient", no_wrap=True)
    table.add_column("where (table.field, event)", overflow="fold", min_width=24)
    table.add_column("rule", no_wrap=True)
    table.add_column("value", overflow="fold", ratio=1)
    for row in frame.iter_rows(named=True):
        status = row["state"] + (f" ({row['resolution']})" if row["resolution"] else "")
        patient = row["patient_key"] or ""
        where = f"{row['table'] or ''}.{row['column'] or ''}"
        if row["event_label"]:
            where += f", {row['event_label']}"
        cells = [
            row["query_id"],
            status,
            patient.removeprefix(f"{row['site_id']}-"),
            where,
            row["rule_id"],
            "" if row["value"] is None else str(row["value"]),
        ]
        table.add_row(*(escape(cell) for cell in cells))  # site data is never markup
    console().print(table)


@queries.command("history")
@click.argument("query_ids", nargs=-1)
@_options()
@click.option("--site", default=None, help="Only the queries of this site.")
@_format_option()
def history(
    query_ids: tuple[str, ...], registry_path: Path, lock_timeout: float, site: str | None, fmt: str
) -> None:
    """The history of queries: who, when, from → to, why (all, or QUERY_IDS)."""
    import polars as pl

    from cartreg.queries.lifecycle import history as load_history
    from cartreg.registry.store import open_registry

    with open_registry(registry_path, lock_timeout=lock_timeout) as reg:
        frame = load_history(reg, list(query_ids) or None)
    if site:
        frame = frame.filter(pl.col("query_id").str.starts_with(f"{site.upper()}-"))
    if fmt == "json":
        click.echo(_json(frame), nl=False)
        return
    out = console()
    for row in frame.iter_rows(named=True):
        move = f"{row['from_state'] or '-'} → {row['to_state']}"
        if row["resolution"]:
            move += f" ({row['resolution']})"
        extra = f" [{row['response']}]" if row["response"] else ""
        out.print(
            escape(
                f"{row['event_at']:%Y-%m-%d %H:%M} {row['query_id']} {row['action']}: {move}"
                f"{extra} by {row['actor']}: {row['reason'] or ''}"
                + (f" — {row['comment']}" if row["comment"] else "")
            )
        )


@queries.command("export")
@_options()
@click.option("--site", required=True, help="Site whose open queries are exported.")
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Workbook to write (e.g. SITE-queries.xlsx).",
)
@click.pass_context
def export(
    ctx: click.Context, registry_path: Path, lock_timeout: float, site: str, out_path: Path
) -> None:
    """Write a site's open queries to an XLSX workbook with drop-down answer columns."""
    from cartreg.queries.clock import now
    from cartreg.queries.submission import identifier_columns
    from cartreg.queries.workbook import all_guidance, write_workbook
    from cartreg.registry.store import open_registry

    guidance = all_guidance()
    with open_registry(registry_path, lock_timeout=lock_timeout) as reg:
        count = write_workbook(
            reg,
            site.upper(),
            out_path,
            guidance=guidance,
            identifiers=identifier_columns(cdm_from_context(ctx)),
            when=now(),
        )
    console().print(escape(f"wrote {out_path} ({count} open queries of {site.upper()})"))


@queries.command("import")
@click.argument("workbook", type=click.Path(dir_okay=False, path_type=Path))
@_options(write=True)
@click.option("--site", default=None, help="Refuse the workbook unless it is for this site.")
def import_workbook(
    workbook: Path, registry_path: Path, lock_timeout: float, actor: str | None, site: str | None
) -> None:
    """Record the answers of a workbook a site sent back."""
    from cartreg.queries.clock import actor as who
    from cartreg.queries.clock import now
    from cartreg.queries.lifecycle import record_answers
    from cartreg.queries.workbook import check_workbook, read_workbook
    from cartreg.registry.store import open_registry

    answers = read_workbook(workbook)
    with open_registry(registry_path, write=True, lock_timeout=lock_timeout) as reg:
        check_workbook(reg, answers, workbook, site=site.upper() if site else None)
        counts = record_answers(
            reg, answers.rows, actor=who(actor), when=now(), source=workbook.name
        )
    console().print(
        escape(
            f"{answers.site_id}: {counts['answered']} answered, {counts['comments']} comments, "
            f"{counts['on_closed']} answers to queries closed meanwhile, "
            f"{counts['unchanged']} unchanged ({workbook})"
        )
    )


@queries.command("close")
@click.argument("query_ids", nargs=-1, required=True)
@_options(write=True)
@click.option("--waive", "resolution", flag_value="waived", help="Accepted as correct as it is.")
@click.option(
    "--cannot-obtain", "resolution", flag_value="unobtainable", help="The data cannot be obtained."
)
@click.option("--reason", required=True, help="Why (kept in the history).")
@click.option(
    "--expires",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="A waiver stops hiding its finding after this date (YYYY-MM-DD).",
)
def close(
    query_ids: tuple[str, ...],
    registry_path: Path,
    lock_timeout: float,
    actor: str | None,
    resolution: str | None,
    reason: str,
    expires: dt.datetime | None,
) -> None:
    """Close queries as waived (--waive) or as data that cannot be obtained (--cannot-obtain)."""
    from cartreg.errors import InputError
    from cartreg.queries.clock import actor as who
    from cartreg.queries.clock import now
    from cartreg.queries.lifecycle import close_queries
    from cartreg.registry.store import open_registry

    if resolution is None:
        raise InputError("say how the query is closed", hint="pass --waive or --cannot-obtain")
    with open_registry(registry_path, write=True, lock_timeout=lock_timeout) as reg:
        closed = close_queries(
            reg,
            list(query_ids),
            resolution=resolution,
            reason=reason,
            actor=who(actor),
            when=now(),
            expires=expires.date() if expires else None,
        )
    for query_id in closed["query_id"].to_list():
        console().print(f"{query_id}: closed ({resolution})")


@queries.command("reopen")
@click.argument("query_ids", nargs=-1, required=True)
@_options(write=True)
@click.option("--reason", required=True, help="Why (kept in the history).")
def reopen(
    query_ids: tuple[str, ...],
    registry_path: Path,
    lock_timeout: float,
    actor: str | None,
    reason: str,
) -> None:
    """Reopen closed queries (e.g. a waiver given in error)."""
    from cartreg.queries.clock import actor as who
    from cartreg.queries.clock import now
    from cartreg.queries.lifecycle import reopen_queries
    from cartreg.registry.store import open_registry

    with open_registry(registry_path, write=True, lock_timeout=lock_timeout) as reg:
        done = reopen_queries(reg, list(query_ids), reason=reason, actor=who(actor), when=now())
    for query_id in done["query_id"].to_list():
        console().print(f"{query_id}: reopened")


@queries.command("configure")
@_options()
@click.option(
    "--min-severity",
    type=click.Choice(("error", "warning", "info")),
    required=True,
    help="The least severe finding that opens a query (default warning).",
)
def configure(registry_path: Path, lock_timeout: float, min_severity: str) -> None:
    """Set which findings open queries (info findings do not, unless configured)."""
    from cartreg.queries.lifecycle import set_min_severity
    from cartreg.registry.store import open_registry

    with open_registry(registry_path, write=True, lock_timeout=lock_timeout) as reg:
        set_min_severity(reg, min_severity)
    console().print(escape(f"{registry_path}: {min_severity} findings and worse open queries"))


@queries.command("import-waivers")
@click.argument("waivers_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@_options(write=True)
@click.option("--site", required=True, help="Site whose findings the waivers name.")
def import_waivers(
    waivers_file: Path,
    registry_path: Path,
    lock_timeout: float,
    actor: str | None,
    site: str,
) -> None:
    """Close as waived the queries of the findings a --waivers file names (by finding id, in
    the site's stored versions, latest first)."""
    from cartreg.queries.clock import actor as who
    from cartreg.queries.clock import now
    from cartreg.queries.waiver_import import import_waivers as run_import
    from cartreg.registry.store import open_registry
    from cartreg.rules.waivers import load_waivers

    waivers = load_waivers(waivers_file)
    with open_registry(registry_path, write=True, lock_timeout=lock_timeout) as reg:
        result = run_import(reg, site.upper(), waivers, actor=who(actor), when=now())
    out = console()
    out.print(
        f"{site.upper()}: {len(result.waived)} queries waived, {len(result.already)} already "
        f"waived, {len(result.expired)} waivers expired, {len(result.unmatched)} matched no "
        "query"
    )
    for finding_id in result.unmatched:
        out.print(f"  [yellow]no query for finding {escape(finding_id)}[/]")


@queries.command("scorecard")
@_options()
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write (default: standard output for JSON; scorecard.html for HTML).",
)
@_format_option(("html", "json"))
@click.option(
    "--as-of",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Date the aging of open queries is counted to (default: now).",
)
def scorecard(
    registry_path: Path,
    lock_timeout: float,
    out_path: Path | None,
    fmt: str,
    as_of: dt.datetime | None,
) -> None:
    """Per-site scorecard: query counts, response and closing times, aging, trend."""
    from cartreg.queries.clock import now
    from cartreg.queries.scorecard import render_html
    from cartreg.queries.scorecard import scorecard as compute
    from cartreg.registry.store import open_registry

    when = as_of.replace(tzinfo=dt.UTC) if as_of else now()
    with open_registry(registry_path, lock_timeout=lock_timeout) as reg:
        card = compute(reg, as_of=when, registry_name=registry_path.name)
    if fmt == "json":
        text = json.dumps(card, indent=2, ensure_ascii=False) + "\n"
        if out_path is None:
            click.echo(text, nl=False)
            return
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(text, encoding="utf-8")
    else:
        out_path = out_path or Path("scorecard.html")
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(render_html(card), encoding="utf-8")
    console(stderr=True).print(escape(f"wrote {out_path} ({len(card['sites'])} sites)"))
