"""``cartreg sites``: the mapping each site's portal uploads are ingested with."""

from __future__ import annotations

from pathlib import Path

import click

from cartreg.cli.common import cdm_from_context, console, registry_option


@click.group()
def sites() -> None:
    """Sites of the portal and their registered mappings (docs/portal.md)."""


@sites.command("add")
@click.argument("site")
@click.option(
    "--mapping",
    "mapping_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The site's mapping YAML (checked against the CDM before it is registered).",
)
@registry_option()
@click.pass_context
def add(ctx: click.Context, site: str, mapping_path: Path, registry_path: Path) -> None:
    """Register (or replace) the mapping SITE's uploads are ingested with."""
    from cartreg.portal.audit import admin_event, append_events
    from cartreg.portal.sites import register_mapping
    from cartreg.registry.store import current_user, open_registry, transaction

    cdm = cdm_from_context(ctx)
    with open_registry(registry_path, write=True) as reg, transaction(reg):
        entry = register_mapping(reg, site, mapping_path, cdm=cdm, registered_by=current_user())
        event = admin_event(
            "site.mapping",
            object=f"site:{entry.site_id}",
            site_id=entry.site_id,
            detail=f"mapping sha256 {entry.mapping_sha256[:12]}",
        )
        append_events(reg, [event])
    console().print(
        f"{entry.site_id}: mapping registered (sha256 {entry.mapping_sha256[:12]}); "
        f"reads {', '.join(entry.source_files(cdm))}"
    )


@sites.command("list")
@registry_option()
def list_(registry_path: Path) -> None:
    """Sites with a registered mapping, when and by whom, and their users."""
    from rich.table import Table

    from cartreg.portal.sites import list_site_mappings
    from cartreg.portal.users import list_users
    from cartreg.registry.store import open_registry

    with open_registry(registry_path) as reg:
        mappings = list_site_mappings(reg)
        people = list_users(reg)
    if not mappings:
        console().print(f"{registry_path}: no site mappings (add one with `cartreg sites add`)")
        return
    table = Table(title="Portal sites")
    for header in ("site", "mapping sha256", "registered", "by", "active users"):
        table.add_column(header)
    for m in mappings:
        names = sorted(u.name for u in people if u.site_id == m.site_id and u.active)
        table.add_row(
            m.site_id,
            m.mapping_sha256[:12],
            f"{m.registered_at:%Y-%m-%d}",
            m.registered_by,
            ", ".join(names),
        )
    console().print(table)
