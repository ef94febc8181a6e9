"""Portal users: roles, argon2 password hashes, sign-in checks (the library of ``cartreg users``).

Roles (docs/decisions/portal.md):

* ``site``: one site's submissions, reports, diffs, queries and scorecard; nothing of any other.
* ``coordinator``: every site's status, reports and diffs; decisions, query triage, merges.
* ``statistician``: pseudonymised merged datasets and analysis reports only.

Only the argon2id hash of a password is stored, in ``portal_users``; the password itself is
never written anywhere. Users are disabled, never deleted, so the audit log keeps naming them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from cartreg.errors import InputError
from cartreg.registry.store import now_utc

if TYPE_CHECKING:
    from argon2 import PasswordHasher

    from cartreg.registry.store import Registry

ROLES = ("site", "coordinator", "statistician")
MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024  # argon2 hashes anything, but a megabyte "password" is an attack
_USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{1,63}")


@dataclass(frozen=True)
class User:
    """A portal account as the server sees it (never with its hash)."""

    name: str
    role: str
    site_id: str | None
    created_at: datetime
    created_by: str
    disabled_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.disabled_at is None


def _hasher() -> PasswordHasher:
    from argon2 import PasswordHasher

    return PasswordHasher()  # argon2id, RFC 9106 low-memory profile (64 MiB, 3 passes)


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def password_matches(stored_hash: str, password: str) -> bool:
    """Constant-work check of ``password`` against an argon2 hash (False on any mismatch)."""
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return _hasher().verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# Verified against when the user name is unknown or disabled, so that a failed sign-in takes
# as long whether or not the account exists.
_DUMMY_HASH: list[str] = []


def dummy_check(password: str) -> None:
    if not _DUMMY_HASH:
        _DUMMY_HASH.append(hash_password("cartreg-no-such-user-placeholder"))
    password_matches(_DUMMY_HASH[0], password)


def check_password_policy(name: str, password: str) -> None:
    """Refuse passwords that are too short, too long, or the user name itself."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise InputError(
            f"password too short ({len(password)} characters)",
            hint=f"use at least {MIN_PASSWORD_CHARS} characters; a passphrase of several "
            "words is easiest to remember",
        )
    if len(password) > MAX_PASSWORD_CHARS:
        raise InputError(f"password longer than {MAX_PASSWORD_CHARS} characters")
    if password.strip().lower() == name.lower():
        raise InputError("password equals the user name", hint="choose another password")


def check_user_name(name: str) -> str:
    if not _USER_NAME.fullmatch(name):
        raise InputError(
            f"user name {name!r} is not allowed",
            hint="2-64 characters: letters, digits, '.', '_', '@', '-', starting with a letter "
            "or digit",
        )
    return name


def check_site_id(site: str) -> str:
    """The site id in upper case, as mappings spell it (``REDCAP_A``)."""
    from cartreg.ingest.mapping import SITE_ID_PATTERN

    site = site.strip().upper()
    if not re.fullmatch(SITE_ID_PATTERN, site):
        raise InputError(
            f"site id {site!r} is not allowed",
            hint="2-16 characters: upper-case letters, digits and '_', starting with a letter",
        )
    return site


def user_from_row(row: tuple[object, ...]) -> User:
    name, role, site, created_at, created_by, disabled_at = row
    assert isinstance(created_at, datetime)
    return User(
        name=str(name),
        role=str(role),
        site_id=None if site is None else str(site),
        created_at=created_at,
        created_by=str(created_by),
        disabled_at=disabled_at if isinstance(disabled_at, datetime) else None,
    )


_COLUMNS = "user_name, role, site_id, created_at, created_by, disabled_at"


def get_user(registry: Registry, name: str) -> User | None:
    row = registry.first_row(f"SELECT {_COLUMNS} FROM portal_users WHERE user_name = ?", [name])
    return None if row is None else user_from_row(row)


def list_users(registry: Registry) -> list[User]:
    rows = registry.conn.execute(
        f"SELECT {_COLUMNS} FROM portal_users ORDER BY role, site_id NULLS FIRST, user_name"
    ).fetchall()
    return [user_from_row(tuple(r)) for r in rows]


def add_user(
    registry: Registry,
    name: str,
    *,
    role: str,
    password: str,
    site: str | None = None,
    created_by: str,
) -> User:
    """Create a user (in the caller's write transaction). Site users need ``site``; others none."""
    check_user_name(name)
    if role not in ROLES:
        raise InputError(f"unknown role {role!r}", hint=f"one of {', '.join(ROLES)}")
    if role == "site":
        if not site:
            raise InputError("a site user needs --site", hint="e.g. --site REDCAP_A")
        site = check_site_id(site)
    elif site:
        raise InputError(f"a {role} sees every site; give --site only for site users")
    else:
        site = None
    check_password_policy(name, password)
    if get_user(registry, name) is not None:
        raise InputError(
            f"user {name} exists",
            hint="user names are never reused (the audit log names them); choose another",
        )
    when = now_utc()
    registry.conn.execute(
        "INSERT INTO portal_users (user_name, role, site_id, password_hash, created_at, "
        "created_by) VALUES (?, ?, ?, ?, ?, ?)",
        [name, role, site, hash_password(password), when, created_by],
    )
    return User(name=name, role=role, site_id=site, created_at=when, created_by=created_by)


def disable_user(registry: Registry, name: str, *, disabled_by: str) -> User:
    """Disable a user and end their sessions (in the caller's write transaction)."""
    user = get_user(registry, name)
    if user is None:
        raise InputError(f"no user {name}", hint="see `cartreg users list`")
    if not user.active:
        return user
    when = now_utc()
    registry.conn.execute(
        "UPDATE portal_users SET disabled_at = ?, disabled_by = ? WHERE user_name = ?",
        [when, disabled_by, name],
    )
    registry.conn.execute(
        "UPDATE portal_sessions SET ended_at = ? WHERE user_name = ? AND ended_at IS NULL",
        [when, name],
    )
    return get_user(registry, name) or user


def authenticate(registry: Registry, name: str, password: str) -> User | None:
    """The active user ``name`` if ``password`` is theirs, else None (same work either way)."""
    row = registry.first_row(
        f"SELECT {_COLUMNS}, password_hash FROM portal_users WHERE user_name = ?", [name]
    )
    if row is None or row[5] is not None:
        dummy_check(password)
        return None
    if not password_matches(str(row[6]), password):
        return None
    return user_from_row(tuple(row[:6]))
