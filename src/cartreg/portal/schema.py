"""Store schema of the portal's tables (a registry store migration; docs/decisions/portal.md).

Plain SQL, imported by :mod:`cartreg.registry.store` into its migration list.

* ``portal_users``: one row per user: role, site (site users only), argon2 hash, who created
  or disabled the account and when. Users are disabled, never deleted (the audit log names them).
* ``portal_sessions``: one row per sign-in: the sha256 of the session id (the id itself is only
  in the user's cookie), absolute expiry, when it ended.
* ``portal_secrets``: keys the server generates once (the session-signing key).
* ``portal_site_mappings``: each site's mapping as registered by a coordinator; the latest row
  per site is the one used, earlier rows stay as history.
* ``portal_uploads``: one row per upload: who, when, file names and sizes, state, the stored
  submission, and the message shown to the site.
* ``portal_reports``: the validation report (HTML) rendered when an upload was processed.
* ``portal_merges``: merges started in the portal, their state and output folder.
* ``audit_log``: append-only; every row carries the sha256 of the previous one (a hash chain).
"""

from __future__ import annotations

PORTAL_TABLES: tuple[str, ...] = (
    """CREATE TABLE portal_users (
        user_name VARCHAR PRIMARY KEY,
        role VARCHAR NOT NULL,
        site_id VARCHAR,
        password_hash VARCHAR NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        created_by VARCHAR NOT NULL,
        disabled_at TIMESTAMPTZ,
        disabled_by VARCHAR)""",
    """CREATE TABLE portal_sessions (
        session_hash VARCHAR PRIMARY KEY,
        user_name VARCHAR NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL,
        ended_at TIMESTAMPTZ)""",
    """CREATE TABLE portal_secrets (
        name VARCHAR PRIMARY KEY, value VARCHAR NOT NULL, created_at TIMESTAMPTZ NOT NULL)""",
    """CREATE TABLE portal_site_mappings (
        site_id VARCHAR NOT NULL,
        registered_at TIMESTAMPTZ NOT NULL,
        registered_by VARCHAR NOT NULL,
        mapping_sha256 VARCHAR NOT NULL,
        mapping_text VARCHAR NOT NULL)""",
    """CREATE TABLE portal_uploads (
        upload_id BIGINT PRIMARY KEY,
        site_id VARCHAR NOT NULL,
        user_name VARCHAR NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        finished_at TIMESTAMPTZ,
        state VARCHAR NOT NULL,
        files_json VARCHAR NOT NULL,
        submission_id BIGINT,
        message VARCHAR)""",
    """CREATE TABLE portal_reports (
        submission_id BIGINT PRIMARY KEY,
        created_at TIMESTAMPTZ NOT NULL,
        report_html VARCHAR NOT NULL)""",
    """CREATE TABLE portal_merges (
        merge_id BIGINT PRIMARY KEY,
        created_at TIMESTAMPTZ NOT NULL,
        created_by VARCHAR NOT NULL,
        data_cut DATE,
        state VARCHAR NOT NULL,
        finished_at TIMESTAMPTZ,
        pseudonymized BOOLEAN,
        summary_json VARCHAR,
        message VARCHAR)""",
    """CREATE TABLE audit_log (
        event_id BIGINT PRIMARY KEY,
        event_at TIMESTAMPTZ NOT NULL,
        actor VARCHAR NOT NULL,
        role VARCHAR,
        site_id VARCHAR,
        action VARCHAR NOT NULL,
        object VARCHAR,
        outcome VARCHAR NOT NULL,
        detail VARCHAR,
        client VARCHAR,
        prev_hash VARCHAR NOT NULL,
        row_hash VARCHAR NOT NULL)""",
)
