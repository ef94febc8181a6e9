"""``cartreg users``: portal accounts (add, list, disable)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cartreg.cli.common import console, registry_option


@click.group()
def users() -> None:
    """Portal users: sites, coordinators and statisticians (docs/portal.md)."""


def _read_password(name: str, password_file: Path | None) -> str:
    if password_file is None:
        password: str = click.prompt(
            f"Password for {name}", hide_input=True, confirmation_prompt=True, err=True
        )
        return password
    from cartreg.errors import InputError

    try:
        text = password_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read password file: {exc}", where=str(password_file)) from None
    return text.splitlines()[0] if text else ""


@users.command("add")
@click.argument("name")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["site", "coordinator", "statistician"]),
    help="site: one site's data; coordinator: every site, decisions, merges; statistician: "
    "merged pseudonymised data only.",
)
@click.option("--site", default=None, help="The user's site (site users only), e.g. REDCAP_A.")
@click.option(
    "--password-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Read the password from the first line of this file (default: prompt).",
)
@registry_option()
def add(
    name: str, role: str, site: str | None, password_file: Path | None, registry_path: Path
) -> None:
    """Create user NAME; the password is hashed with argon2 and never stored."""
    from cartreg.portal.audit import admin_event, append_events
    from cartreg.portal.sites import site_mapping
    from cartreg.portal.users import add_user, check_password_policy, check_user_name
    from cartreg.registry.store import current_user, open_registry, transaction

    check_user_name(name)
    password = _read_password(name, password_file)
    check_password_policy(name, password)
    with open_registry(registry_path, write=True) as reg, transaction(reg):
        user = add_user(
            reg, name, role=role, password=password, site=site, created_by=current_user()
        )
        event = admin_event(
            "user.add", object=f"user:{name}", site_id=user.site_id, detail=f"role {role}"
        )
        append_events(reg, [event])
        missing_mapping = user.site_id is not None and site_mapping(reg, user.site_id) is None
    what = f"site user of {user.site_id}" if user.site_id else user.role
    console().print(f"added {user.name} ({what})")
    if missing_mapping:
        console(stderr=True).print(
            f"note: site {user.site_id} has no mapping yet; register it with "
            f"`cartreg sites add {user.site_id} --mapping FILE` before they upload"
        )


@users.command("list")
@registry_option()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_(registry_path: Path, as_json: bool) -> None:
    """Users, their role, site, and whether they are active."""
    from cartreg.portal.users import list_users
    from cartreg.registry.store import open_registry

    with open_registry(registry_path) as reg:
        rows = list_users(reg)
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "user": u.name,
                        "role": u.role,
                        "site_id": u.site_id,
                        "created_at": u.created_at.isoformat(),
                        "created_by": u.created_by,
                        "active": u.active,
                        "disabled_at": u.disabled_at.isoformat() if u.disabled_at else None,
                    }
                    for u in rows
                ],
                indent=2,
            )
        )
        return
    if not rows:
        console().print(f"{registry_path}: no users yet (add one with `cartreg users add`)")
        return
    from rich.table import Table

    table = Table(title="Portal users")
    for header in ("user", "role", "site", "created", "status"):
        table.add_column(header)
    for u in rows:
        status = "active" if u.active else f"disabled {u.disabled_at:%Y-%m-%d}"
        table.add_row(u.name, u.role, u.site_id or "", f"{u.created_at:%Y-%m-%d}", status)
    console().print(table)


@users.command("disable")
@click.argument("name")
@registry_option()
def disable(name: str, registry_path: Path) -> None:
    """Disable user NAME and end their sessions (users are never deleted)."""
    from cartreg.portal.audit import admin_event, append_events
    from cartreg.portal.users import disable_user
    from cartreg.registry.store import current_user, open_registry, transaction

    with open_registry(registry_path, write=True) as reg, transaction(reg):
        user = disable_user(reg, name, disabled_by=current_user())
        append_events(
            reg, [admin_event("user.disable", object=f"user:{name}", site_id=user.site_id)]
        )
    console().print(f"disabled {name}; their sessions have ended")
