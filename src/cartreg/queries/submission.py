"""Queries at submit time: fingerprint a submission's findings, plan the query changes, and
hide the findings of waived queries from the version's report and counts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from cartreg.exprs import format_text
from cartreg.queries.fingerprint import fingerprint_findings, fingerprint_output, load_quarantine
from cartreg.queries.lifecycle import SiteQueries, SubmissionPlan, load_site, plan_submission
from cartreg.registry.store import DEFAULT_LOCK_TIMEOUT, Registry, open_registry
from cartreg.rules.waivers import Waiver

if TYPE_CHECKING:
    from cartreg.cdm import CDM
    from cartreg.validation import TableWaiverLookup

NO_EXPIRY = dt.date(9999, 12, 31)  # how the validation report shows a waiver without expiry


def identifier_columns(cdm: CDM) -> set[str]:
    return {c.name for t in cdm.tables.values() for c in t.columns if c.identifier}


def of_site(findings: pl.DataFrame, site: str) -> pl.DataFrame:
    """``findings`` of one site's submission, those without a site (table-level ones) included
    as the site's: they are its problems, and two sites must never share a fingerprint."""
    return findings.with_columns(pl.col("site_id").fill_null(site)).filter(
        pl.col("site_id") == site
    )


def output_patients(out_dir: Path | str) -> list[str]:
    """The patient keys of an ingest output folder."""
    path = Path(out_dir) / "tables" / "patients.parquet"
    if not path.is_file():
        return []
    keys = pl.scan_parquet(path).select(pl.col("patient_key").cast(pl.String)).collect()
    return keys["patient_key"].drop_nulls().unique().to_list()


def plan_output(
    registry: Registry,
    out_dir: Path | str,
    *,
    site: str,
    findings: pl.DataFrame,
    cdm: CDM,
    when: dt.datetime,
    mapping_path: Path | str | None = None,
    waivers: Sequence[Waiver] = (),
) -> SubmissionPlan:
    """The query changes a submission of the ingest output ``out_dir`` makes (under the lock)."""
    findings = of_site(findings, site)
    prints = fingerprint_output(out_dir, findings, cdm=cdm, mapping_path=mapping_path)
    return plan_submission(
        load_site(registry, site),
        findings=findings,
        fingerprints=prints,
        patients=output_patients(out_dir),
        when=when,
        identifiers=identifier_columns(cdm),
        waivers=waivers,
    )


class QueryWaivers:
    """Waivers for a validation report from a snapshot of the site's queries: the findings a
    waived query hides, found by fingerprint (a :data:`cartreg.validation.TableWaiverLookup`)."""

    def __init__(
        self,
        snapshot: SiteQueries,
        *,
        cdm: CDM,
        when: dt.datetime,
        out_dir: Path | str | None = None,
        mapping_path: Path | str | None = None,
        waivers: Sequence[Waiver] = (),
    ) -> None:
        self.snapshot = snapshot
        self.cdm = cdm
        self.when = when
        self.waivers = tuple(waivers)
        self.quarantine = load_quarantine(out_dir, mapping_path, cdm) if out_dir is not None else []

    def __call__(self, findings: pl.DataFrame, tables: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
        site = of_site(findings, self.snapshot.site_id)
        prints = fingerprint_findings(site, tables, cdm=self.cdm, quarantine=self.quarantine)
        plan = plan_submission(
            self.snapshot,
            findings=site,
            fingerprints=prints,
            patients=[],
            when=self.when,
            identifiers=identifier_columns(self.cdm),
            waivers=self.waivers,
        )
        reasons = self.snapshot.queries.filter(pl.col("resolution") == "waived").select(
            "query_id",
            format_text("query {} closed as waived: {}", "query_id", "closed_reason").alias(
                "why_then"
            ),
            pl.col("waiver_expires").alias("expires_then"),
        )
        hidden = plan.findings.filter(pl.col("suppressed")).join(reasons, on="query_id", how="left")
        legacy = pl.DataFrame(
            {
                "finding_id": [w.finding_id for w in self.waivers],
                "why_now": [w.justification for w in self.waivers],
                "expires_now": [w.expires for w in self.waivers],
            },
            schema={"finding_id": pl.String, "why_now": pl.String, "expires_now": pl.Date},
        ).unique("finding_id", keep="first")
        return hidden.join(legacy, on="finding_id", how="left").select(
            "finding_id",
            pl.coalesce("why_then", "why_now").alias("justification"),
            pl.when(pl.col("why_then").is_not_null())
            .then(pl.col("expires_then"))
            .otherwise(pl.col("expires_now"))
            .fill_null(NO_EXPIRY)
            .cast(pl.String)
            .alias("expires"),
        )


def report_waivers(
    registry_path: Registry | Path | str,
    *,
    site: str,
    cdm: CDM,
    when: dt.datetime,
    out_dir: Path | str | None = None,
    mapping_path: Path | str | None = None,
    waivers: Sequence[Waiver] = (),
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> TableWaiverLookup | None:
    """The waiver lookup of a submission's validation report, or None when the site has no
    waived query and no ``waivers`` are given.

    Opens the registry as a writer (a submit is about to write; an older store is upgraded now
    rather than after the ingest); an open registry is only read (the portal takes the snapshot
    under a read lock and validates without one).
    """
    if isinstance(registry_path, Registry):
        snapshot = load_site(registry_path, site)
    else:
        with open_registry(registry_path, write=True, lock_timeout=lock_timeout) as registry:
            snapshot = load_site(registry, site)
    if not waivers and snapshot.queries.filter(pl.col("resolution") == "waived").height == 0:
        return None
    return QueryWaivers(
        snapshot, cdm=cdm, when=when, out_dir=out_dir, mapping_path=mapping_path, waivers=waivers
    )
