"""What the registry holds: per site and version, status, dates, counts and open findings."""

from __future__ import annotations

import polars as pl

from cartreg.registry.store import Registry

EVENT_TABLES = (
    "car_t_infusions",
    "disease_assessments",
    "progression_events",
    "salvage_treatments",
    "transplants",
)


def registry_status(registry: Registry) -> pl.DataFrame:
    """One row per stored version (no-op resubmissions counted in ``noop_resubmissions``).

    ``events`` counts rows of the event tables (infusions, assessments, progressions, salvage,
    transplants); ``errors``/``warnings`` are the findings stored with the version.
    """
    events = ", ".join(f"'{t}'" for t in EVENT_TABLES)
    return registry.frame(
        f"""
        SELECT s.site_id, s.version, s.status,
               CAST(s.submitted_at AS VARCHAR) AS submitted_at, s.submitted_by,
               CAST(coalesce(sum(t.n_rows) FILTER (WHERE t.table_name = 'patients'), 0)
                   AS BIGINT) AS patients,
               CAST(coalesce(sum(t.n_rows) FILTER (WHERE t.table_name IN ({events})), 0)
                   AS BIGINT) AS events,
               s.n_errors AS errors, s.n_warnings AS warnings,
               (SELECT count(*) FROM submissions n WHERE n.noop_of = s.submission_id)
                   AS noop_resubmissions,
               s.cdm_version, s.mapping_version, s.rule_version, s.decision_reason,
               s.submission_id
        FROM submissions s LEFT JOIN submission_tables t USING (submission_id)
        WHERE s.version IS NOT NULL
        GROUP BY ALL
        ORDER BY s.site_id, s.version
        """
    )


def noop_log(registry: Registry) -> pl.DataFrame:
    """Resubmissions that repeated an earlier version's inputs and stored nothing."""
    return registry.frame(
        """
        SELECT n.site_id, CAST(n.submitted_at AS VARCHAR) AS submitted_at, n.submitted_by,
               o.version AS same_as_version
        FROM submissions n JOIN submissions o ON n.noop_of = o.submission_id
        ORDER BY n.submission_id
        """
    )
