"""The audit log: who did what, when, in which role and site, to which object.

Rows are only ever inserted. Each row stores the sha256 of the previous row and its own hash over
its fields and that link (a hash chain), so a row edited or deleted inside the log breaks the
chain, and ``cartreg audit`` says where. (Whoever can write the file can also rewrite the whole
chain: keep a copy of the last hash with each backup to detect that.)

Records: every sign-in (and failed or blocked attempt), sign-out, upload and its outcome, view of
a report, diff or dataset, decision, query action, merge, download, denied access, and the user
and site changes made with the CLI. Details never hold patient values or passwords.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cartreg.registry.store import now_utc

if TYPE_CHECKING:
    from cartreg.registry.store import Registry

GENESIS = "0" * 64
FIELDS = (
    "event_id",
    "event_at",
    "actor",
    "role",
    "site_id",
    "action",
    "object",
    "outcome",
    "detail",
    "client",
)


@dataclass(frozen=True)
class AuditEvent:
    """One thing that happened. ``object`` names what it happened to (``submission:12``)."""

    actor: str
    action: str
    role: str | None = None
    site_id: str | None = None
    object: str | None = None
    outcome: str = "ok"
    detail: str | None = None
    client: str | None = None
    at: datetime = field(default_factory=now_utc)


def admin_event(
    action: str, *, object: str, site_id: str | None = None, **fields: Any
) -> AuditEvent:
    """An event of a command-line change (``cartreg users``/``sites``), by the login name."""
    from cartreg.registry.store import current_user

    return AuditEvent(
        actor=current_user(), role="admin", action=action, object=object, site_id=site_id, **fields
    )


def _row_hash(prev_hash: str, values: Sequence[Any]) -> str:
    canonical = json.dumps(
        [v.astimezone(UTC).isoformat() if isinstance(v, datetime) else v for v in values],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()


def append_events(registry: Registry, events: Iterable[AuditEvent]) -> int:
    """Append ``events`` in order (caller holds the writer lock; one transaction is theirs)."""
    last = registry.first_row(
        "SELECT event_id, row_hash FROM audit_log ORDER BY event_id DESC LIMIT 1"
    )
    next_id, prev = (1, GENESIS) if last is None else (int(last[0]) + 1, str(last[1]))
    count = 0
    for event in events:
        values = [
            next_id,
            event.at.astimezone(UTC),
            event.actor,
            event.role,
            event.site_id,
            event.action,
            event.object,
            event.outcome,
            event.detail,
            event.client,
        ]
        row_hash = _row_hash(prev, values)
        registry.conn.execute(
            f"INSERT INTO audit_log ({', '.join(FIELDS)}, prev_hash, row_hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [*values, prev, row_hash],
        )
        prev, next_id, count = row_hash, next_id + 1, count + 1
    return count


@dataclass(frozen=True)
class ChainCheck:
    events: int
    broken_at: int | None  # the first event id whose link or hash does not match

    @property
    def intact(self) -> bool:
        return self.broken_at is None


def verify_chain(registry: Registry) -> ChainCheck:
    """Recompute the hash chain over the whole log."""
    rows = registry.conn.execute(
        f"SELECT {', '.join(FIELDS)}, prev_hash, row_hash FROM audit_log ORDER BY event_id"
    ).fetchall()
    prev = GENESIS
    expected_id = 1
    for row in rows:
        values, prev_hash, row_hash = list(row[:-2]), str(row[-2]), str(row[-1])
        if values[0] != expected_id or prev_hash != prev or _row_hash(prev, values) != row_hash:
            return ChainCheck(len(rows), int(values[0]))
        prev, expected_id = row_hash, expected_id + 1
    return ChainCheck(len(rows), None)


def read_events(
    registry: Registry,
    *,
    since: datetime | None = None,
    actor: str | None = None,
    action: str | None = None,
    site: str | None = None,
) -> list[dict[str, Any]]:
    """Audit rows (oldest first) matching the filters, as dicts of :data:`FIELDS`."""
    where, params = ["TRUE"], []
    for clause, value in (
        ("event_at >= ?", since),
        ("actor = ?", actor),
        ("action LIKE ?", None if action is None else f"{action}%"),
        ("site_id = ?", site),
    ):
        if value is not None:
            where.append(clause)
            params.append(value)
    rows = registry.conn.execute(
        f"SELECT {', '.join(FIELDS)} FROM audit_log WHERE {' AND '.join(where)} ORDER BY event_id",
        params,
    ).fetchall()
    return [
        {
            name: (value.astimezone(UTC).isoformat() if isinstance(value, datetime) else value)
            for name, value in zip(FIELDS, row, strict=True)
        }
        for row in rows
    ]


def format_text(event: dict[str, Any]) -> str:
    """One line: time, actor (role, site), action, object, outcome, detail."""
    who = event["actor"]
    context = ", ".join(str(v) for v in (event["role"], event["site_id"]) if v)
    if context:
        who = f"{who} ({context})"
    parts = [str(event["event_at"])[:19].replace("T", " "), who, event["action"]]
    if event["object"]:
        parts.append(str(event["object"]))
    parts.append(str(event["outcome"]))
    if event["detail"]:
        parts.append(str(event["detail"]))
    if event["client"]:
        parts.append(f"from {event['client']}")
    return "  ".join(parts)
