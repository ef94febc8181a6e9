"""What the portal's pages read from the registry (no web imports).

Every lookup of a site's object takes the site of the asking user (``site=None`` for a
coordinator): a site user asking for another site's submission, upload or report gets None,
exactly as for an id that does not exist.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cartreg.registry.store import Registry

MAX_FINDINGS_SHOWN = 500


def _dicts(registry: Registry, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    cursor = registry.conn.execute(sql, params or [])
    names = [d[0] for d in cursor.description or []]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _site_clause(site: str | None, column: str = "site_id") -> tuple[str, list[Any]]:
    return ("", []) if site is None else (f" AND {column} = ?", [site])


def site_versions(registry: Registry, site: str | None = None) -> list[dict[str, Any]]:
    """Stored versions (``cartreg registry status`` rows), of one site or all, newest first."""
    from cartreg.registry.status import registry_status

    frame = registry_status(registry)
    rows = [r for r in frame.to_dicts() if site is None or r["site_id"] == site]
    return sorted(rows, key=lambda r: (r["site_id"], -int(r["version"])))


def submission(registry: Registry, submission_id: int, site: str | None) -> dict[str, Any] | None:
    where, params = _site_clause(site, "s.site_id")
    rows = _dicts(
        registry,
        "SELECT s.submission_id, s.site_id, s.version, s.status, s.noop_of, "
        "CAST(s.submitted_at AS VARCHAR) AS submitted_at, s.submitted_by, s.cdm_version, "
        "s.mapping_version, s.mapping_sha256, s.rule_version, s.fail_on, s.n_errors, "
        "s.n_warnings, s.n_info, s.decision_reason, o.version AS noop_of_version "
        "FROM submissions s LEFT JOIN submissions o ON s.noop_of = o.submission_id "
        f"WHERE s.submission_id = ?{where}",
        [submission_id, *params],
    )
    return rows[0] if rows else None


def submission_files(registry: Registry, submission_id: int) -> list[dict[str, Any]]:
    return _dicts(
        registry,
        "SELECT file, sha256, rows_read, rows_harmonized, rows_quarantined "
        "FROM submission_files WHERE submission_id = ? ORDER BY file",
        [submission_id],
    )


def submission_tables(registry: Registry, submission_id: int) -> list[dict[str, Any]]:
    return _dicts(
        registry,
        "SELECT table_name, n_rows FROM submission_tables WHERE submission_id = ? "
        "ORDER BY table_name",
        [submission_id],
    )


def submission_findings(registry: Registry, submission_id: int) -> tuple[list[dict[str, Any]], int]:
    """The first :data:`MAX_FINDINGS_SHOWN` findings (worst first) and the total."""
    total = int(
        registry.scalar(
            "SELECT count(*) FROM submission_findings WHERE submission_id = ?", [submission_id]
        )
    )
    rows = _dicts(
        registry,
        'SELECT rule_id, severity, category, "table", "column", source_file, source_row, value, '
        "message FROM submission_findings WHERE submission_id = ? "
        "ORDER BY CASE severity WHEN 'error' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, "
        'rule_id, "table", source_row LIMIT ?',
        [submission_id, MAX_FINDINGS_SHOWN],
    )
    return rows, total


def decisions(registry: Registry, submission_id: int) -> list[dict[str, Any]]:
    return _dicts(
        registry,
        "SELECT CAST(decided_at AS VARCHAR) AS decided_at, decided_by, status, reason "
        "FROM decisions WHERE submission_id = ? ORDER BY decided_at",
        [submission_id],
    )


def report_html(registry: Registry, submission_id: int) -> str | None:
    row = registry.first_row(
        "SELECT report_html FROM portal_reports WHERE submission_id = ?", [submission_id]
    )
    return None if row is None else str(row[0])


def has_report(registry: Registry, submission_id: int) -> bool:
    return bool(
        registry.scalar(
            "SELECT count(*) FROM portal_reports WHERE submission_id = ?", [submission_id]
        )
    )


_UPLOAD = (
    "SELECT upload_id, site_id, user_name, CAST(created_at AS VARCHAR) AS created_at, "
    "CAST(finished_at AS VARCHAR) AS finished_at, state, files_json, submission_id, message "
    "FROM portal_uploads"
)


def _upload(row: dict[str, Any]) -> dict[str, Any]:
    row["files"] = json.loads(row.pop("files_json") or "[]")
    return row


def uploads(registry: Registry, site: str | None, limit: int = 20) -> list[dict[str, Any]]:
    where, params = _site_clause(site)
    rows = _dicts(
        registry, f"{_UPLOAD} WHERE TRUE{where} ORDER BY upload_id DESC LIMIT ?", [*params, limit]
    )
    return [_upload(r) for r in rows]


def upload(registry: Registry, upload_id: int, site: str | None) -> dict[str, Any] | None:
    where, params = _site_clause(site)
    rows = _dicts(registry, f"{_UPLOAD} WHERE upload_id = ?{where}", [upload_id, *params])
    return _upload(rows[0]) if rows else None


_MERGE = (
    "SELECT merge_id, CAST(created_at AS VARCHAR) AS created_at, created_by, "
    "CAST(data_cut AS VARCHAR) AS data_cut, state, CAST(finished_at AS VARCHAR) AS finished_at, "
    "pseudonymized, summary_json, message FROM portal_merges"
)


def _merge(row: dict[str, Any]) -> dict[str, Any]:
    row["summary"] = json.loads(row.pop("summary_json") or "{}")
    return row


def merges(registry: Registry, *, published_only: bool) -> list[dict[str, Any]]:
    """Merges, newest first; ``published_only``: finished and pseudonymised (statisticians)."""
    where = " WHERE state = 'done' AND pseudonymized" if published_only else ""
    return [_merge(r) for r in _dicts(registry, f"{_MERGE}{where} ORDER BY merge_id DESC")]


def merge(registry: Registry, merge_id: int, *, published_only: bool) -> dict[str, Any] | None:
    where = " AND state = 'done' AND pseudonymized" if published_only else ""
    rows = _dicts(registry, f"{_MERGE} WHERE merge_id = ?{where}", [merge_id])
    return _merge(rows[0]) if rows else None


def accepted_sites(registry: Registry) -> list[str]:
    rows = registry.conn.execute(
        "SELECT DISTINCT site_id FROM submissions WHERE status = 'accepted' ORDER BY 1"
    ).fetchall()
    return [str(r[0]) for r in rows]


def known_sites(registry: Registry) -> list[str]:
    """Sites with a registered mapping or a stored submission."""
    rows = registry.conn.execute(
        "SELECT site_id FROM portal_site_mappings UNION SELECT site_id FROM submissions ORDER BY 1"
    ).fetchall()
    return [str(r[0]) for r in rows]
