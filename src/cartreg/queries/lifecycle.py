"""Query states in the registry, and how each submission and each decision moves them.

States (docs/queries.md)::

    open ──site answers──► answered ──coordinator──► closed (waived | unobtainable)
      │                        │
      └── finding gone in a later submission ──► closed (resolved)
    closed ── finding returns / waiver expires / waived value changes ──► open (reopened)

Every change appends one row to ``query_events`` (who, when, from → to, why); ``queries`` holds
the current state of each query. A submission is planned (:func:`plan_submission`) under the
writer lock before its transaction, because a waived query changes what the version counts,
and applied (:func:`apply_plan`) inside the transaction that stores the version.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import polars as pl

from cartreg.errors import InputError
from cartreg.exprs import format_text
from cartreg.findings import FINDING_FIELDS, MASK, SEVERITY_ORDER
from cartreg.registry.store import Registry, transaction
from cartreg.rules.waivers import Waiver

OPEN, ANSWERED, CLOSED = "open", "answered", "closed"
STATES = (OPEN, ANSWERED, CLOSED)
RESOLVED, WAIVED, UNOBTAINABLE = "resolved", "waived", "unobtainable"
RESOLUTIONS = (RESOLVED, WAIVED, UNOBTAINABLE)
# What a site can answer (code -> the words in the workbook's drop-down).
RESPONSES: dict[str, str] = {
    "corrected": "corrected in the next submission",
    "confirmed": "confirmed correct as is",
    "unobtainable": "cannot be obtained",
}
MIN_SEVERITY_KEY = "queries.min_severity"
# Kept up to date on a query from the latest version holding its finding (beside the value).
_FOLLOWED = (
    "severity",
    "category",
    "message",
    "source_file",
    "source_row",
    "patient_key",
    "event_label",
)
DEFAULT_MIN_SEVERITY = "warning"  # errors and warnings open queries; info findings do not

_EVENT_COLUMNS: dict[str, pl.DataType] = {
    "query_id": pl.String(),
    "step": pl.Int32(),
    "action": pl.String(),
    "from_state": pl.String(),
    "to_state": pl.String(),
    "resolution": pl.String(),
    "reason": pl.String(),
    "expires": pl.Date(),
    "actor": pl.String(),
}
_QUERY_SELECT = """
    SELECT query_id, fingerprint, site_id, rule_id, severity, category, "table", "column",
           patient_key, event, event_label, anchor, state, resolution, value, message,
           source_file, source_row, timezone('UTC', opened_at) AS opened_at, opened_submission,
           last_seen_submission, response, response_comment,
           timezone('UTC', responded_at) AS responded_at, closed_reason, closed_value,
           waiver_expires, timezone('UTC', updated_at) AS updated_at
    FROM queries
"""


def _rank(column: str = "severity") -> pl.Expr:
    return pl.col(column).replace_strict(SEVERITY_ORDER, default=9, return_dtype=pl.Int8)


def min_severity(registry: Registry) -> str:
    """The least severe finding that opens a query (``queries configure``)."""
    value = registry.scalar("SELECT value FROM registry_meta WHERE key = ?", [MIN_SEVERITY_KEY])
    return str(value) if value in SEVERITY_ORDER else DEFAULT_MIN_SEVERITY


def set_min_severity(registry: Registry, severity: str) -> None:
    if severity not in SEVERITY_ORDER:
        raise InputError(f"unknown severity {severity!r}", hint="error, warning or info")
    with transaction(registry):
        registry.conn.execute(
            "INSERT OR REPLACE INTO registry_meta VALUES (?, ?)", [MIN_SEVERITY_KEY, severity]
        )


def site_queries(registry: Registry, site: str | None = None) -> pl.DataFrame:
    """The current state of the queries (of one site), by query id."""
    if site is None:
        return registry.frame(f"{_QUERY_SELECT} ORDER BY query_id")
    return registry.frame(f"{_QUERY_SELECT} WHERE site_id = ? ORDER BY query_id", [site])


def mask_identifiers(findings: pl.DataFrame, identifiers: Iterable[str]) -> pl.DataFrame:
    """Values of identifier columns (and of ING-IDENTIFIER findings) as ``***``, also where
    the value is quoted in the message."""
    names = sorted({*identifiers, *(f"{n}_raw" for n in identifiers)})
    hidden = (
        (pl.col("column").is_in(names) | (pl.col("rule_id") == "ING-IDENTIFIER"))
        & pl.col("value").is_not_null()
        & (pl.col("value") != MASK)
    )
    return findings.with_columns(
        pl.when(hidden)
        # split + join: polars replaces only fixed-length patterns
        .then(pl.col("message").str.split(pl.col("value")).list.join(MASK))
        .otherwise(pl.col("message"))
        .alias("message"),
        pl.when(hidden).then(pl.lit(MASK)).otherwise(pl.col("value")).alias("value"),
    )


@dataclass(frozen=True)
class SiteQueries:
    """A site's queries as read from the registry, and the severity that opens a query."""

    site_id: str
    queries: pl.DataFrame
    min_severity: str = DEFAULT_MIN_SEVERITY


def load_site(registry: Registry, site: str) -> SiteQueries:
    return SiteQueries(site, site_queries(registry, site), min_severity(registry))


@dataclass(frozen=True)
class SubmissionPlan:
    """What one submission does to its site's queries (reasons hold a ``<VERSION>`` slot)."""

    site_id: str
    findings: pl.DataFrame  # every finding: fingerprint columns, query_id, suppressed
    new_queries: pl.DataFrame
    events: pl.DataFrame
    seen: pl.DataFrame  # existing queries whose finding is present: latest value and place

    def changes(self) -> dict[str, int]:
        """Queries opened, resolved, reopened, waived, sent back to open; findings suppressed."""
        counts = dict(self.events.group_by("action").len().iter_rows())
        out = {
            name: int(counts.get(action, 0))
            for name, action in (
                ("opened", "open"),
                ("resolved", "resolve"),
                ("reopened", "reopen"),
                ("waived", "waive"),
                ("still_present", "still_present"),
            )
        }
        out["suppressed"] = len(self.suppressed_ids)
        return out

    @property
    def suppressed_ids(self) -> list[str]:
        """Finding ids a waived query hides in this version (not counted, not reported)."""
        return self.findings.filter(pl.col("suppressed"))["finding_id"].unique().to_list()


def _legacy_decisions(
    current: pl.DataFrame, waivers: Sequence[Waiver], today: dt.date
) -> pl.DataFrame:
    """Waivers from a ``--waivers`` file, by the fingerprint of the finding they name."""
    schema = {
        "finding_id": pl.String(),
        "decision_reason": pl.String(),
        "decision_expires": pl.Date(),
        "decision_actor": pl.String(),
    }
    active = [w for w in waivers if w.active(today)]
    table = pl.DataFrame(
        {
            "finding_id": [w.finding_id for w in active],
            "decision_reason": [w.justification for w in active],
            "decision_expires": [w.expires for w in active],
            "decision_actor": [w.approved_by for w in active],
        },
        schema=schema,
    ).unique("finding_id", keep="first")
    return (
        current.select("finding_id", "fingerprint")
        .join(table, on="finding_id")
        .unique("fingerprint", keep="first")
        .drop("finding_id")
    )


def plan_submission(
    snapshot: SiteQueries,
    *,
    findings: pl.DataFrame,
    fingerprints: pl.DataFrame,
    patients: Sequence[str],
    when: dt.datetime,
    identifiers: Iterable[str] = (),
    waivers: Sequence[Waiver] = (),
) -> SubmissionPlan:
    """Decide the query changes of a submission of the snapshot's site with ``findings``.

    New findings at or above the registry's minimum severity open queries; a closed query whose
    finding is present again reopens (resolved, expired waiver, or a waived value that changed);
    an answered 'corrected' query whose finding is still there goes back to open; open and
    answered queries whose finding is gone are resolved. Waivers of ``waivers`` (a ``--waivers``
    file) close the queries of the findings they name as waived.
    """
    today = when.date()
    current = mask_identifiers(
        findings.select(FINDING_FIELDS).join(
            fingerprints.select(
                "finding_id", "fingerprint", "patient_key", "event", "event_label", "anchor"
            ).unique("finding_id", keep="first"),
            on="finding_id",
            how="left",
        ),
        identifiers,
    )
    # One finding per fingerprint: one rule hitting one event and column twice (two CDM rows
    # of one source row) is one query.
    representative = current.sort([_rank(), "finding_id"]).unique(
        "fingerprint", keep="first", maintain_order=True
    )
    site, existing = snapshot.site_id, snapshot.queries
    decisions = _legacy_decisions(current, waivers, today)
    limit = SEVERITY_ORDER[snapshot.min_severity]

    fresh = (
        representative.join(existing.select("fingerprint"), on="fingerprint", how="anti")
        .join(decisions, on="fingerprint", how="left")
        .filter((_rank() <= limit) | pl.col("decision_reason").is_not_null())
        .sort(
            [_rank(), "table", "patient_key", "event", "column", "rule_id"],
            nulls_last=True,
        )
    )
    last = existing["query_id"].str.extract(r"-Q(\d+)$").cast(pl.Int64).max()
    start = int(last) + 1 if isinstance(last, int) else 1
    new_ids = [f"{site}-Q{n:05d}" for n in range(start, start + fresh.height)]
    fresh = fresh.with_columns(pl.Series("query_id", new_ids, dtype=pl.String))
    new_queries = fresh.select(
        "query_id",
        "fingerprint",
        pl.lit(site).alias("site_id"),
        "rule_id",
        "severity",
        "category",
        "table",
        "column",
        "patient_key",
        pl.col("event").fill_null(""),
        "event_label",
        pl.col("anchor").fill_null("table"),
        pl.lit(OPEN).alias("state"),
        "value",
        "message",
        "source_file",
        "source_row",
    )
    opened = fresh.select(
        "query_id",
        pl.lit(0, dtype=pl.Int32).alias("step"),
        pl.lit("open").alias("action"),
        pl.lit(None, dtype=pl.String).alias("from_state"),
        pl.lit(OPEN).alias("to_state"),
        pl.lit(None, dtype=pl.String).alias("resolution"),
        pl.lit("found in version <VERSION>").alias("reason"),
        pl.lit(None, dtype=pl.Date).alias("expires"),
        pl.lit(None, dtype=pl.String).alias("actor"),
    )
    waived_new = fresh.filter(pl.col("decision_reason").is_not_null()).select(
        "query_id",
        pl.lit(1, dtype=pl.Int32).alias("step"),
        pl.lit("waive").alias("action"),
        pl.lit(OPEN).alias("from_state"),
        pl.lit(CLOSED).alias("to_state"),
        pl.lit(WAIVED).alias("resolution"),
        pl.col("decision_reason").alias("reason"),
        pl.col("decision_expires").alias("expires"),
        pl.col("decision_actor").alias("actor"),
    )

    present = existing.join(
        representative.select("fingerprint", pl.col("value").alias("new_value"), *_FOLLOWED),
        on="fingerprint",
        suffix="_new",
    ).join(decisions, on="fingerprint", how="left")
    state, resolution = pl.col("state"), pl.col("resolution")
    closed_as = state.eq(CLOSED) & resolution.is_in([WAIVED, UNOBTAINABLE])
    decided = pl.col("decision_reason").is_not_null() & ~(state.eq(CLOSED) & resolution.eq(WAIVED))
    expired = state.eq(CLOSED) & resolution.eq(WAIVED) & (pl.col("waiver_expires") < today)
    changed = closed_as & pl.col("closed_value").ne_missing(pl.col("new_value"))
    corrected = state.eq(ANSWERED) & pl.col("response").eq("corrected")
    returned = state.eq(CLOSED) & resolution.eq(RESOLVED)
    shown = pl.col("new_value").fill_null("empty")
    moves = present.with_columns(
        pl.when(decided)
        .then(pl.lit("waive"))
        .when(returned | expired | changed)
        .then(pl.lit("reopen"))
        .when(corrected)
        .then(pl.lit("still_present"))
        .alias("action"),
        pl.when(decided)
        .then(pl.col("decision_reason"))
        .when(returned)
        .then(pl.lit("finding returned in version <VERSION>"))
        .when(expired)
        .then(format_text("waiver expired on {}", pl.col("waiver_expires")))
        .when(changed)
        .then(
            format_text(
                "value changed from {} to {} since the query was closed as {}",
                pl.col("closed_value").fill_null("empty"),
                shown,
                resolution,
            )
        )
        .when(corrected)
        .then(
            pl.lit(
                f"the site answered '{RESPONSES['corrected']}', but the finding is still in "
                "version <VERSION>"
            )
        )
        .alias("reason"),
    ).filter(pl.col("action").is_not_null())
    moved = moves.select(
        "query_id",
        pl.lit(0, dtype=pl.Int32).alias("step"),
        "action",
        pl.col("state").alias("from_state"),
        pl.when(pl.col("action") == "waive")
        .then(pl.lit(CLOSED))
        .otherwise(pl.lit(OPEN))
        .alias("to_state"),
        pl.when(pl.col("action") == "waive")
        .then(pl.lit(WAIVED))
        .otherwise(pl.lit(None, dtype=pl.String))
        .alias("resolution"),
        "reason",
        pl.when(pl.col("action") == "waive")
        .then(pl.col("decision_expires"))
        .otherwise(pl.lit(None, dtype=pl.Date))
        .alias("expires"),
        pl.when(pl.col("action") == "waive")
        .then(pl.col("decision_actor"))
        .otherwise(pl.lit(None, dtype=pl.String))
        .alias("actor"),
    )

    gone = existing.join(representative.select("fingerprint"), on="fingerprint", how="anti")
    patient_gone = pl.col("patient_key").is_not_null() & ~pl.col("patient_key").is_in(
        list(patients)
    )
    resolving = gone.filter(
        state.is_in([OPEN, ANSWERED])
        | (state.eq(CLOSED) & resolution.is_in([WAIVED, UNOBTAINABLE]))
    ).select(
        "query_id",
        pl.lit(0, dtype=pl.Int32).alias("step"),
        pl.lit("resolve").alias("action"),
        pl.col("state").alias("from_state"),
        pl.lit(CLOSED).alias("to_state"),
        pl.lit(RESOLVED).alias("resolution"),
        pl.when(state.eq(CLOSED))
        .then(format_text("no longer found in version <VERSION> (was {})", resolution))
        .when(patient_gone)
        .then(format_text("patient {} is not in version <VERSION>", pl.col("patient_key")))
        .otherwise(pl.lit("not found in version <VERSION>"))
        .alias("reason"),
        pl.lit(None, dtype=pl.Date).alias("expires"),
        pl.lit(None, dtype=pl.String).alias("actor"),
    )
    events = pl.concat(
        [f.cast(pl.Schema(_EVENT_COLUMNS)) for f in (opened, waived_new, moved, resolving)]
    ).sort("query_id", "step")

    # Which query each finding belongs to, and which findings a waiver hides in this version.
    final = pl.concat(
        [
            existing.select("fingerprint", "query_id", "state", "resolution", "waiver_expires"),
            fresh.select(
                "fingerprint",
                "query_id",
                pl.lit(OPEN).alias("state"),
                pl.lit(None, dtype=pl.String).alias("resolution"),
                pl.lit(None, dtype=pl.Date).alias("waiver_expires"),
            ),
        ],
        how="vertical_relaxed",
    ).join(
        events.sort("query_id", "step")
        .group_by("query_id", maintain_order=True)
        .agg(
            pl.col("to_state").last().alias("to_state"),
            pl.col("resolution").last().alias("to_resolution"),
            pl.col("expires").last().alias("to_expires"),
        ),
        on="query_id",
        how="left",
    )
    final = final.with_columns(
        pl.coalesce("to_state", "state").alias("state"),
        pl.when(pl.col("to_state").is_not_null())
        .then(pl.col("to_resolution"))
        .otherwise(pl.col("resolution"))
        .alias("resolution"),
        pl.when(pl.col("to_state").is_not_null())
        .then(pl.col("to_expires"))
        .otherwise(pl.col("waiver_expires"))
        .alias("waiver_expires"),
    )
    hides = (
        pl.col("state").eq(CLOSED)
        & pl.col("resolution").eq(WAIVED)
        & (pl.col("waiver_expires").is_null() | (pl.col("waiver_expires") >= today))
    )
    tagged = current.join(
        final.select("fingerprint", "query_id", hides.alias("suppressed")),
        on="fingerprint",
        how="left",
    ).with_columns(pl.col("suppressed").fill_null(False))
    return SubmissionPlan(site, tagged, new_queries, events, present)


def _insert(registry: Registry, table: str, frame: pl.DataFrame) -> None:
    if frame.height == 0:
        return
    name = f"_cartreg_{table}"
    registry.conn.register(name, frame.to_arrow())
    try:
        cols = ", ".join(f'"{c}"' for c in frame.columns)
        registry.conn.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {name}")
    finally:
        registry.conn.unregister(name)


def _update(registry: Registry, frame: pl.DataFrame, columns: Sequence[str]) -> None:
    """Set ``columns`` of the queries named by ``frame.query_id`` from ``frame``."""
    if frame.height == 0:
        return
    registry.conn.register("_cartreg_query_update", frame.select("query_id", *columns).to_arrow())
    try:
        sets = ", ".join(f'"{c}" = u."{c}"' for c in columns)
        registry.conn.execute(
            f"UPDATE queries SET {sets} FROM _cartreg_query_update u "
            "WHERE queries.query_id = u.query_id"
        )
    finally:
        registry.conn.unregister("_cartreg_query_update")


def _append_events(
    registry: Registry,
    events: pl.DataFrame,
    *,
    actor: str,
    when: dt.datetime,
    submission_id: int | None = None,
    version: int | None = None,
) -> None:
    """Append ``events`` (in order) to the history."""
    if events.height == 0:
        return
    start = int(registry.scalar("SELECT coalesce(max(event_id), 0) + 1 FROM query_events"))
    frame = events.with_columns(
        pl.int_range(start, start + events.height, dtype=pl.Int64).alias("event_id"),
        pl.lit(when).alias("event_at"),
        pl.col("actor").fill_null(actor),
        pl.lit(submission_id, dtype=pl.Int64).alias("submission_id"),
        pl.lit(version, dtype=pl.Int32).alias("version"),
        pl.col("reason").str.replace_all("<VERSION>", str(version or ""), literal=True),
    )
    for name in ("response", "comment"):
        if name not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(name))
    _insert(
        registry,
        "query_events",
        frame.select(
            "event_id",
            "query_id",
            "event_at",
            "actor",
            "action",
            "from_state",
            "to_state",
            "resolution",
            "submission_id",
            "version",
            "response",
            "comment",
            "reason",
            "expires",
        ),
    )


def _project(registry: Registry, events: pl.DataFrame, when: dt.datetime) -> None:
    """Carry the last event of each query in ``events`` into its current-state row."""
    if events.height == 0:
        return
    last = (
        events.drop("response", "comment", strict=False)
        .group_by("query_id", maintain_order=True)
        .last()
    )
    reopened = pl.col("to_state") != CLOSED
    closing = pl.col("to_state") == CLOSED
    current = site_values(registry, last["query_id"].to_list())
    frame = last.join(current, on="query_id", how="left").with_columns(
        pl.col("to_state").alias("state"),
        pl.col("resolution"),
        pl.when(closing).then(pl.col("reason")).otherwise(None).alias("closed_reason"),
        pl.when(closing).then(pl.col("value")).otherwise(None).alias("closed_value"),
        pl.when(closing).then(pl.col("expires")).otherwise(None).alias("waiver_expires"),
        # A reopened query asks the site again: its earlier answer stays in the history.
        pl.when(reopened & (pl.col("action") != "answer"))
        .then(None)
        .otherwise(pl.col("response"))
        .alias("response"),
        pl.when(reopened & (pl.col("action") != "answer"))
        .then(None)
        .otherwise(pl.col("response_comment"))
        .alias("response_comment"),
        pl.lit(when).alias("updated_at"),
    )
    _update(
        registry,
        frame,
        [
            "state",
            "resolution",
            "closed_reason",
            "closed_value",
            "waiver_expires",
            "response",
            "response_comment",
            "updated_at",
        ],
    )


def site_values(registry: Registry, query_ids: Sequence[str]) -> pl.DataFrame:
    """Value and response of the given queries."""
    registry.conn.register(
        "_cartreg_ids",
        pl.DataFrame({"query_id": list(query_ids)}, schema={"query_id": pl.String}).to_arrow(),
    )
    try:
        return registry.frame(
            "SELECT q.query_id, q.value, q.response, q.response_comment FROM queries q "
            "JOIN _cartreg_ids USING (query_id)"
        )
    finally:
        registry.conn.unregister("_cartreg_ids")


def apply_plan(
    registry: Registry,
    plan: SubmissionPlan,
    *,
    submission_id: int,
    version: int,
    actor: str,
    when: dt.datetime,
) -> None:
    """Write a planned submission's query changes (inside the submit's transaction)."""
    _insert(
        registry,
        "queries",
        plan.new_queries.with_columns(
            pl.lit(when).alias("opened_at"),
            pl.lit(submission_id, dtype=pl.Int64).alias("opened_submission"),
            pl.lit(submission_id, dtype=pl.Int64).alias("last_seen_submission"),
            pl.lit(when).alias("updated_at"),
        ),
    )
    _update(
        registry,
        plan.seen.select(
            "query_id",
            pl.col("new_value").alias("value"),
            *[pl.coalesce(f"{name}_new", name).alias(name) for name in _FOLLOWED],
            pl.lit(submission_id, dtype=pl.Int64).alias("last_seen_submission"),
        ),
        ["value", *_FOLLOWED, "last_seen_submission"],
    )
    _append_events(
        registry,
        plan.events.drop("step"),
        actor=actor,
        when=when,
        submission_id=submission_id,
        version=version,
    )
    _project(
        registry,
        plan.events.with_columns(
            pl.col("reason").str.replace_all("<VERSION>", str(version), literal=True)
        ),
        when,
    )
    _insert(
        registry,
        "finding_fingerprints",
        plan.findings.select(
            pl.lit(submission_id, dtype=pl.Int64).alias("submission_id"),
            "finding_id",
            "fingerprint",
            "patient_key",
            "event",
            "event_label",
            "anchor",
            "query_id",
            "suppressed",
        ).filter(pl.col("fingerprint").is_not_null()),
    )


# --- decisions outside a submission: site answers, coordinator closes and reopens -----------


def _load(registry: Registry, query_ids: Sequence[str]) -> pl.DataFrame:
    ids = list(dict.fromkeys(query_ids))
    found = registry.frame(
        f"{_QUERY_SELECT} WHERE query_id IN (SELECT unnest(?)) ORDER BY query_id", [ids]
    )
    missing = sorted(set(ids) - set(found["query_id"].to_list()))
    if missing:
        raise InputError(
            f"no query {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''} in this registry",
            where=str(registry.path),
            hint="see `cartreg queries list`",
        )
    return found


def _event_rows(rows: list[dict[str, object]]) -> pl.DataFrame:
    schema = {**_EVENT_COLUMNS, "response": pl.String(), "comment": pl.String()}
    schema.pop("step")
    return pl.DataFrame(rows, schema=schema)


def record_answers(
    registry: Registry,
    answers: pl.DataFrame,
    *,
    actor: str,
    when: dt.datetime,
    source: str = "",
) -> dict[str, int]:
    """Record site responses (``query_id``, ``response`` code or null, ``comment``) at once.

    An open query with a response becomes answered; an answered one takes the new answer; a
    closed one keeps its state and the answer is kept in its history; a comment without a
    response is kept in the history. An answer identical to the current one is skipped, so
    importing the same workbook twice changes nothing.
    """
    counts = {"answered": 0, "comments": 0, "on_closed": 0, "unchanged": 0}
    if answers.height == 0:
        return counts
    bad = answers.filter(
        pl.col("response").is_not_null() & ~pl.col("response").is_in(list(RESPONSES))
    )
    if bad.height:
        raise InputError(f"unknown response {bad['response'][0]!r}", hint=", ".join(RESPONSES))
    current = _load(registry, answers["query_id"].to_list())
    merged = answers.join(current, on="query_id", suffix="_now")
    same = pl.col("response").eq_missing(pl.col("response_now")) & pl.col("comment").eq_missing(
        pl.col("response_comment")
    )
    todo = merged.filter(~same)
    closed = pl.col("state") == CLOSED
    action = (
        pl.when(pl.col("response").is_null())
        .then(pl.lit("comment"))
        .when(closed)
        .then(pl.lit("response"))
        .otherwise(pl.lit("answer"))
    )
    rows = todo.select(
        "query_id",
        action.alias("action"),
        pl.col("state").alias("from_state"),
        pl.when(action == "answer").then(pl.lit(ANSWERED)).otherwise("state").alias("to_state"),
        pl.when(closed).then(pl.col("resolution")).otherwise(None).alias("resolution"),
        pl.lit(f"site response{f' ({source})' if source else ''}").alias("reason"),
        pl.lit(None, dtype=pl.Date).alias("expires"),
        pl.lit(None, dtype=pl.String).alias("actor"),
        "response",
        "comment",
    )
    answered = rows.filter(pl.col("action") == "answer")
    with transaction(registry):
        _append_events(registry, rows, actor=actor, when=when)
        _update(
            registry,
            answered.select(
                "query_id",
                pl.lit(ANSWERED).alias("state"),
                "response",
                pl.col("comment").alias("response_comment"),
                pl.lit(when).alias("responded_at"),
                pl.lit(when).alias("updated_at"),
            ),
            ["state", "response", "response_comment", "responded_at", "updated_at"],
        )
        # Kept on the query too, so that importing the same comment again is a no-op.
        _update(
            registry,
            rows.filter(pl.col("action") == "comment").select(
                "query_id", pl.col("comment").alias("response_comment")
            ),
            ["response_comment"],
        )
    by_action = dict(rows.group_by("action").len().iter_rows())
    counts.update(
        answered=int(by_action.get("answer", 0)),
        comments=int(by_action.get("comment", 0)),
        on_closed=int(by_action.get("response", 0)),
        unchanged=merged.height - todo.height,
    )
    return counts


def close_queries(
    registry: Registry,
    query_ids: Sequence[str],
    *,
    resolution: str,
    reason: str,
    actor: str,
    when: dt.datetime,
    expires: dt.date | None = None,
) -> pl.DataFrame:
    """Close open or answered queries as waived (accepted as correct) or unobtainable."""
    decisions = pl.DataFrame(
        {"query_id": list(dict.fromkeys(query_ids))}, schema={"query_id": pl.String}
    ).with_columns(
        pl.lit(reason).alias("reason"),
        pl.lit(expires, dtype=pl.Date).alias("expires"),
        pl.lit(None, dtype=pl.String).alias("actor"),
    )
    return close_each(registry, decisions, resolution=resolution, actor=actor, when=when)


def close_each(
    registry: Registry,
    decisions: pl.DataFrame,
    *,
    resolution: str,
    actor: str,
    when: dt.datetime,
) -> pl.DataFrame:
    """Close queries, each with its own ``reason``, ``expires`` and ``actor`` (null: ``actor``)
    in one transaction; refuses if any is closed already."""
    if resolution not in (WAIVED, UNOBTAINABLE):
        raise InputError(f"cannot close a query as {resolution!r}", hint="waived or unobtainable")
    if decisions.filter(pl.col("reason").str.strip_chars().fill_null("") == "").height:
        raise InputError("closing a query needs a reason", hint="pass --reason")
    if resolution != WAIVED and decisions["expires"].drop_nulls().len():
        raise InputError("only a waiver has an expiry date", hint="drop --expires")
    current = _load(registry, decisions["query_id"].to_list())
    closed = current.filter(pl.col("state") == CLOSED)
    if closed.height:
        row = closed.row(0, named=True)
        raise InputError(
            f"query {row['query_id']} is already closed ({row['resolution']})",
            where=str(registry.path),
            hint=f"reopen it first: `cartreg queries reopen {row['query_id']} --reason ...`",
        )
    events = (
        decisions.join(current.select("query_id", "state"), on="query_id")
        .sort("query_id")
        .select(
            "query_id",
            pl.lit("waive" if resolution == WAIVED else "close").alias("action"),
            pl.col("state").alias("from_state"),
            pl.lit(CLOSED).alias("to_state"),
            pl.lit(resolution).alias("resolution"),
            pl.col("reason").str.replace_all(r"\s+", " ").str.strip_chars().alias("reason"),
            "expires",
            "actor",
            pl.lit(None, dtype=pl.String).alias("response"),
            pl.lit(None, dtype=pl.String).alias("comment"),
        )
    )
    with transaction(registry):
        _append_events(registry, events, actor=actor, when=when)
        _project(registry, events, when)
    return current.select("query_id", "site_id")


def reopen_queries(
    registry: Registry, query_ids: Sequence[str], *, reason: str, actor: str, when: dt.datetime
) -> pl.DataFrame:
    """Reopen closed queries by hand (e.g. a waiver given in error)."""
    if not reason.strip():
        raise InputError("reopening a query needs a reason", hint="pass --reason")
    current = _load(registry, query_ids)
    still = current.filter(pl.col("state") != CLOSED)
    if still.height:
        raise InputError(
            f"query {still['query_id'][0]} is not closed (it is {still['state'][0]})",
            where=str(registry.path),
        )
    events = _event_rows(
        [
            {
                "query_id": qid,
                "action": "reopen",
                "from_state": CLOSED,
                "to_state": OPEN,
                "resolution": None,
                "reason": " ".join(reason.split()),
            }
            for qid in current["query_id"].to_list()
        ]
    )
    with transaction(registry):
        _append_events(registry, events, actor=actor, when=when)
        _project(registry, events, when)
    return current.select("query_id", "site_id")


def history(registry: Registry, query_ids: Sequence[str] | None = None) -> pl.DataFrame:
    """The history of queries (all, or the given ones), oldest first."""
    sql = (
        "SELECT event_id, query_id, timezone('UTC', event_at) AS event_at, actor, action, "
        "from_state, to_state, resolution, submission_id, version, response, comment, reason, "
        "expires FROM query_events"
    )
    if query_ids:
        _load(registry, query_ids)
        return registry.frame(
            f"{sql} WHERE query_id IN (SELECT unnest(?)) ORDER BY event_id", [list(query_ids)]
        )
    return registry.frame(f"{sql} ORDER BY event_id")
