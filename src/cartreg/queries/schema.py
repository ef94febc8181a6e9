"""Store schema of the query tables (registry store schema version 2, docs/queries.md).

Plain SQL, imported by :mod:`cartreg.registry.store` into its migration list.

* ``queries``: one row per query, its *current* state (a projection of ``query_events``, kept
  for fast listing and export).
* ``query_events``: the append-only history, one row per state change or response: who, when,
  from → to, why. Rows are only ever inserted.
* ``finding_fingerprints``: the fingerprint of every finding a submission stored, with the query
  it belongs to and whether a waiver suppressed it in that version.
"""

from __future__ import annotations

QUERY_TABLES: tuple[str, ...] = (
    """CREATE TABLE queries (
        query_id VARCHAR PRIMARY KEY,
        fingerprint VARCHAR NOT NULL UNIQUE,
        site_id VARCHAR NOT NULL,
        rule_id VARCHAR NOT NULL,
        severity VARCHAR NOT NULL,
        category VARCHAR,
        "table" VARCHAR,
        "column" VARCHAR,
        patient_key VARCHAR,
        event VARCHAR NOT NULL,
        event_label VARCHAR,
        anchor VARCHAR NOT NULL,
        state VARCHAR NOT NULL,
        resolution VARCHAR,
        value VARCHAR,
        message VARCHAR,
        source_file VARCHAR,
        source_row BIGINT,
        opened_at TIMESTAMPTZ NOT NULL,
        opened_submission BIGINT,
        last_seen_submission BIGINT,
        response VARCHAR,
        response_comment VARCHAR,
        responded_at TIMESTAMPTZ,
        closed_reason VARCHAR,
        closed_value VARCHAR,
        waiver_expires DATE,
        updated_at TIMESTAMPTZ NOT NULL)""",
    """CREATE TABLE query_events (
        event_id BIGINT PRIMARY KEY,
        query_id VARCHAR NOT NULL,
        event_at TIMESTAMPTZ NOT NULL,
        actor VARCHAR NOT NULL,
        action VARCHAR NOT NULL,
        from_state VARCHAR,
        to_state VARCHAR NOT NULL,
        resolution VARCHAR,
        submission_id BIGINT,
        version INTEGER,
        response VARCHAR,
        comment VARCHAR,
        reason VARCHAR,
        expires DATE)""",
    """CREATE TABLE finding_fingerprints (
        submission_id BIGINT NOT NULL,
        finding_id VARCHAR NOT NULL,
        fingerprint VARCHAR NOT NULL,
        patient_key VARCHAR,
        event VARCHAR,
        event_label VARCHAR,
        anchor VARCHAR,
        query_id VARCHAR,
        suppressed BOOLEAN NOT NULL)""",
    # Identifies the registry in an exported workbook, so that an import into another registry
    # is refused.
    "INSERT INTO registry_meta VALUES ('registry_id', CAST(uuid() AS VARCHAR))",
)
