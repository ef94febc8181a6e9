"""``cartreg audit``: the portal's append-only audit log."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from cartreg.cli.common import registry_option

_RELATIVE = re.compile(r"(\d+)([mhd])")


def _parse_since(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> datetime | None:
    if value is None:
        return None
    relative = _RELATIVE.fullmatch(value.strip())
    if relative:
        n, unit = int(relative.group(1)), relative.group(2)
        delta = {"m": timedelta(minutes=n), "h": timedelta(hours=n), "d": timedelta(days=n)}[unit]
        return datetime.now(UTC) - delta
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(
            f"'{value}' is neither a date/time (2025-06-30, 2025-06-30T09:00) nor an age "
            "(30m, 12h, 7d)"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


@click.command()
@registry_option()
@click.option(
    "--since",
    callback=_parse_since,
    default=None,
    help="Only events at or after this UTC date/time (2025-06-30, 2025-06-30T09:00) or within "
    "this age (30m, 12h, 7d).",
)
@click.option("--user", "actor", default=None, help="Only this user's events.")
@click.option("--site", default=None, help="Only events about this site.")
@click.option("--action", default=None, help="Only actions starting with this (e.g. login).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="One line per event, or a JSON list.",
)
@click.pass_context
def audit(
    ctx: click.Context,
    registry_path: Path,
    since: datetime | None,
    actor: str | None,
    site: str | None,
    action: str | None,
    fmt: str,
) -> None:
    """Print the audit log and check its hash chain (exit 1 if the chain is broken)."""
    from cartreg.portal.audit import format_text, read_events, verify_chain
    from cartreg.registry.store import open_registry

    with open_registry(registry_path) as reg:
        events = read_events(
            reg, since=since, actor=actor, action=action, site=site.upper() if site else None
        )
        check = verify_chain(reg)
    if fmt == "json":
        click.echo(json.dumps(events, indent=2, ensure_ascii=False))
    else:
        for event in events:
            click.echo(format_text(event))
    if check.intact:
        click.echo(f"audit chain intact ({check.events} events)", err=True)
        return
    click.echo(
        f"audit chain BROKEN at event {check.broken_at}: a row was changed or removed "
        "(compare with a backup)",
        err=True,
    )
    ctx.exit(1)
