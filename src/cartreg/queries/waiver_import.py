"""A ``--waivers`` file imported as decisions on queries: each waiver names a finding by its
id; the query of that finding (in the site's latest stored version holding it) is closed as
waived with the waiver's justification, expiry and approver."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from cartreg.queries.lifecycle import CLOSED, WAIVED, close_each, site_queries
from cartreg.registry.store import Registry
from cartreg.rules.waivers import Waiver


@dataclass(frozen=True)
class WaiverImport:
    waived: tuple[str, ...]  # query ids closed as waived now
    already: tuple[str, ...]  # query ids closed before (left as they are)
    expired: tuple[str, ...]  # finding ids whose waiver has expired (not imported)
    unmatched: tuple[str, ...]  # finding ids with no query in the site's versions


def import_waivers(
    registry: Registry, site: str, waivers: Sequence[Waiver], *, actor: str, when: dt.datetime
) -> WaiverImport:
    today = when.date()
    active = [w for w in waivers if w.active(today)]
    expired = tuple(w.finding_id for w in waivers if not w.active(today))
    table = pl.DataFrame(
        {
            "finding_id": [w.finding_id for w in active],
            "reason": [w.justification for w in active],
            "expires": [w.expires for w in active],
            "actor": [w.approved_by for w in active],
        },
        schema={
            "finding_id": pl.String,
            "reason": pl.String,
            "expires": pl.Date,
            "actor": pl.String,
        },
    ).unique("finding_id", keep="first", maintain_order=True)
    located = registry.frame(
        """
        SELECT f.finding_id, f.query_id
        FROM finding_fingerprints f JOIN submissions s USING (submission_id)
        WHERE s.site_id = ? AND f.query_id IS NOT NULL
        ORDER BY s.version DESC
        """,
        [site],
    ).unique("finding_id", keep="first", maintain_order=True)
    matched = table.join(located, on="finding_id").unique("query_id", keep="first")
    unmatched = tuple(table.join(located, on="finding_id", how="anti")["finding_id"].to_list())
    states = site_queries(registry, site).select("query_id", "state", "resolution")
    matched = matched.join(states, on="query_id")
    done = matched.filter(pl.col("state") == CLOSED)
    todo = matched.filter(pl.col("state") != CLOSED)
    if todo.height:
        close_each(
            registry,
            todo.select("query_id", "reason", "expires", "actor"),
            resolution=WAIVED,
            actor=actor,
            when=when,
        )
    return WaiverImport(
        tuple(sorted(todo["query_id"].to_list())),
        tuple(sorted(done["query_id"].to_list())),
        expired,
        unmatched,
    )
