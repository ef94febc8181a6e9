"""Merge the latest accepted version of each site into one consortium dataset.

Output folder (written to a temporary sibling, then renamed, so a failed merge leaves nothing
half-written)::

    OUT/tables/<table>.parquet   every CDM table, all sites
    OUT/manifest.json            site versions that went in, row reconciliation, file sha256
    OUT/findings.json            CDM + data-quality findings on the merged whole, PU-001 pairs
    OUT/duplicates.csv           probable cross-site duplicates: match probability, the match
                                 weight of each comparison, cluster id, review decision

Patient keys (and the row ids that embed them) are HMAC pseudonyms made with the consortium
secret. A merge without a secret must be asked for (``no_pseudonyms``): the keys then stay
site-prefixed local ids and the manifest says so.

The merge writes to the registry only what record linkage keeps between merges (reviewed links
from ``--links``, scored pairs, cluster ids; :mod:`cartreg.registry.duplicates`), in one
transaction before the output folder appears.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from cartreg import __version__
from cartreg.errors import CartregError, InputError
from cartreg.findings import empty_findings, sort_findings
from cartreg.registry import duplicates as dup
from cartreg.registry import linkage_store
from cartreg.registry.links import check_links
from cartreg.registry.pseudonym import pseudonymize_tables
from cartreg.registry.store import (
    DEFAULT_LOCK_TIMEOUT,
    Registry,
    current_user,
    now_utc,
    open_registry,
    transaction,
)
from cartreg.registry.submit import sha256_file

if TYPE_CHECKING:
    from cartreg.cdm import CDM


@dataclass
class MergeResult:
    out_dir: Path
    manifest: dict[str, Any]
    findings: pl.DataFrame = field(default_factory=empty_findings)
    duplicates: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(schema=dup.CANDIDATE_SCHEMA)
    )
    linkage: dup.LinkageResult | None = None


def latest_accepted(registry: Registry) -> pl.DataFrame:
    """Per site, the newest accepted version (site_id, version, submission_id, ...)."""
    return registry.frame(
        """
        SELECT site_id, version, submission_id, CAST(submitted_at AS VARCHAR) AS submitted_at,
               submitted_by, inputs_sha256, cdm_version, mapping_version, mapping_sha256,
               rule_version, decision_reason, manifest_json
        FROM submissions
        WHERE status = 'accepted' AND version IS NOT NULL
        QUALIFY row_number() OVER (PARTITION BY site_id ORDER BY version DESC) = 1
        ORDER BY site_id
        """
    )


def load_merged_tables(
    registry: Registry, submission_ids: list[int], cdm: CDM
) -> dict[str, pl.DataFrame]:
    stored = set(registry.data_tables())
    tables: dict[str, pl.DataFrame] = {}
    placeholders = ", ".join("?" for _ in submission_ids) or "NULL"
    for spec in cdm.tables.values():
        if spec.name not in stored:
            continue
        cols = [c for c in registry.table_columns(spec.name) if c != "submission_id"]
        select = ", ".join(f'"{c}"' for c in cols)
        order = [c for c in ("site_id", *spec.primary_key) if c in cols]
        # polars sorts the (unique) keys in a fraction of the time DuckDB takes to sort the
        # whole rows; the order is the same byte order either way
        tables[spec.name] = registry.frame(
            f'SELECT {select} FROM "cdm_{spec.name}" WHERE submission_id IN ({placeholders})',
            submission_ids,
        ).sort(order)
    return tables


def rule_catalog_version() -> str:
    """A checksum of the data-quality rule files in use (``none`` when there are none)."""
    import hashlib

    from cartreg.paths import rules_dir

    files = sorted(rules_dir().rglob("*.yaml")) if rules_dir().is_dir() else []
    if not files:
        return "none"
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(rules_dir()).as_posix().encode("utf-8") + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return f"sha256:{digest.hexdigest()[:16]}"


def _is_merge_output(folder: Path) -> bool:
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("manifest") == "cartreg.registry.merge"


def merge_registry(
    registry: Registry | Path | str,
    out_dir: Path | str,
    *,
    secret: bytes | None = None,
    links_path: Path | str | None = None,
    min_probability: float | None = None,
    expected_duplicate_rate: float | None = None,
    relink: bool = False,
    em_check: bool = False,
    overwrite: bool = False,
    cdm: CDM | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    who: str | None = None,
    html_path: Path | str | None = None,
    no_pseudonyms: bool = False,
) -> MergeResult:
    """Merge the latest accepted version of every site into ``out_dir``.

    Duplicate patients are linked incrementally (records new or changed since the last merge
    are scored; ``relink`` scores everything again); ``em_check`` sets EM's estimates beside
    the expert linkage weights. ``html_path`` also writes the findings as an HTML report.
    Patient keys are pseudonymized with ``secret``; without one, ``no_pseudonyms=True`` must
    say that site-local keys may be published.
    """
    hint = (
        "give --secret-file or set $CARTREG_SECRET; pass --no-pseudonyms only to publish "
        "site-local patient keys"
    )
    if secret is None and not no_pseudonyms:
        raise CartregError("a merge needs the consortium secret", hint=hint)
    if secret is not None and no_pseudonyms:
        raise CartregError("a consortium secret was given with --no-pseudonyms", hint=hint)
    if not isinstance(registry, Registry):
        with open_registry(registry, write=True, lock_timeout=lock_timeout) as opened:
            return merge_registry(
                opened,
                out_dir,
                secret=secret,
                links_path=links_path,
                min_probability=min_probability,
                expected_duplicate_rate=expected_duplicate_rate,
                relink=relink,
                em_check=em_check,
                overwrite=overwrite,
                cdm=cdm,
                who=who,
                html_path=html_path,
                no_pseudonyms=no_pseudonyms,
            )
    from cartreg.cdm import load_cdm
    from cartreg.rules.model import load_rules
    from cartreg.validation import build_report

    if not registry.writable:
        raise InputError(
            "a merge keeps reviewed links and linkage state in the registry",
            where=str(registry.path),
            hint="open it with open_registry(path, write=True)",
        )
    cdm = cdm or load_cdm()
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        if not overwrite:
            raise InputError(
                "output folder exists and is not empty",
                where=str(out_dir),
                hint="choose a new folder or pass --overwrite",
            )
        if not _is_merge_output(out_dir):
            raise InputError(
                "refusing to overwrite a folder that is not a previous merge output",
                where=str(out_dir),
                hint="--overwrite replaces only folders with a merge manifest.json",
            )
    links = dup.load_links(links_path) if links_path is not None else None
    sites = latest_accepted(registry)
    if sites.height == 0:
        raise InputError(
            "no accepted submission to merge",
            where=str(registry.path),
            hint="see `cartreg registry status`; accept a version first",
        )
    ids = [int(i) for i in sites["submission_id"].to_list()]
    tables = load_merged_tables(registry, ids, cdm)

    # Duplicates are found on site keys; the review list and findings show published keys.
    aliases: pl.DataFrame | None = None
    if secret is not None:
        published, aliases = pseudonymize_tables(tables, secret)
    else:
        published = tables
    link_warnings = empty_findings()
    file_links = dup.empty_links()
    if links is not None:
        # contradictions within the file are errors; links that cannot apply are warnings
        applying, link_warnings = check_links(
            links,
            patients=tables["patients"]
            if "patients" in tables
            else pl.DataFrame(schema={"patient_key": pl.String, "site_id": pl.String}),
            aliases=aliases,
            source=Path(str(links_path)),
        )
        file_links = dup.canonical_links(applying, aliases)
    kept_links = linkage_store.load_decisions(registry)
    decisions = pl.concat([kept_links, file_links])
    previous = linkage_store.load_state(registry)
    # What a reviewed `same` leaves out is known before any pair is scored, so the linkage
    # (splink on DuckDB, in a thread) runs beside the validation of the pooled data (polars).
    dropped_keys = dup.dropped_keys(decisions, tables)

    # Per site and table: rows that went in and rows dropped as reviewed duplicates.
    recon: dict[str, dict[str, dict[str, int]]] = {}
    for name, frame in tables.items():
        if "site_id" not in frame.columns:
            continue
        is_dropped = (
            pl.col("patient_key").is_in(dropped_keys)
            if "patient_key" in frame.columns
            else pl.lit(False)
        )
        counts = frame.group_by("site_id").agg(
            pl.len().alias("rows"), is_dropped.sum().alias("dropped")
        )
        for site_id, rows, dropped in counts.iter_rows():
            recon.setdefault(str(site_id), {})[name] = {"rows": int(rows), "dropped": int(dropped)}

    keep_mask = {
        name: (
            ~tables[name]["patient_key"].is_in(dropped_keys)
            if "patient_key" in tables[name].columns
            else pl.Series([True] * tables[name].height)
        )
        for name in tables
    }
    merged = {name: published[name].filter(keep_mask[name]) for name in published}

    catalogue = load_rules(cdm=cdm)
    with ThreadPoolExecutor(max_workers=1) as pool:
        linking = pool.submit(
            dup.link_patients,
            tables,
            threshold=min_probability,
            previous=previous,
            decisions=decisions,
            relink=relink,
            em_check=em_check,
            expected_duplicate_rate=expected_duplicate_rate,
        )
        try:
            # CDM and data-quality findings of the pooled data, as `cartreg validate` reports
            # them (schema checks beside the rules, identifier values masked). The catalogue's
            # PU-001 flags both records of every look-alike pair and knows nothing of reviewed
            # links: the linked, link-aware pairs replace it in a merge, so it is not run.
            report = build_report(
                merged,
                rules=[r for r in catalogue if r.id != dup.RULE_ID],
                cdm=cdm,
                source={"merge": out_dir.name},
                generated_at=now_utc().isoformat(),
            )
        finally:
            linkage = linking.result()
    resolved = dup.resolve(linkage.pairs, decisions)
    listed_drops = set(resolved["drop"].drop_nulls().to_list())
    if listed_drops != set(dropped_keys):  # a decided pair is always listed
        raise AssertionError(f"dropped records differ: {sorted(listed_drops ^ set(dropped_keys))}")
    if aliases is not None and aliases.height:
        to_psn = dict(
            zip(aliases["patient_key"].to_list(), aliases["pseudonym"].to_list(), strict=True)
        )
        shown = resolved.with_columns(
            pl.col(c).replace(to_psn) for c in ("key_a", "key_b", "keep", "drop")
        ).pipe(dup.with_pair_ids)
    else:
        shown = resolved.pipe(dup.with_pair_ids)
    rule_version = rule_catalog_version()
    findings_parts = [
        report.findings,
        dup.duplicate_findings(shown, published),
        dup.capacity_findings(linkage.capacity, linkage.threshold),
        link_warnings,
    ]
    if linkage.em is not None:
        findings_parts.append(dup.em_findings(linkage.em))
    findings_parts = [f for f in findings_parts if f.height]
    findings = (
        sort_findings(
            pl.concat(findings_parts, how="vertical_relaxed").unique(
                "finding_id", keep="first", maintain_order=True
            )
        )
        if findings_parts
        else empty_findings()
    )

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        (work / "tables").mkdir()
        table_entries = []
        for name, frame in merged.items():
            target = work / "tables" / f"{name}.parquet"
            frame.write_parquet(target)
            table_entries.append(
                {
                    "table": name,
                    "file": f"tables/{name}.parquet",
                    "rows": frame.height,
                    "sha256": sha256_file(target),
                }
            )
        shown.select(*dup.CANDIDATE_SCHEMA, *dup.LINK_COLUMNS[2:]).write_csv(
            work / "duplicates.csv"
        )
        (work / "findings.json").write_text(
            json.dumps(findings.to_dicts(), indent=2, default=str) + "\n", encoding="utf-8"
        )
        site_entries = []
        for row in sites.iter_rows(named=True):
            site_manifest = json.loads(row["manifest_json"] or "{}")
            site_entries.append(
                {
                    "site_id": row["site_id"],
                    "version": row["version"],
                    "submission_id": row["submission_id"],
                    "submitted_at": row["submitted_at"],
                    "submitted_by": row["submitted_by"],
                    "inputs_sha256": row["inputs_sha256"],
                    "cdm_version": row["cdm_version"],
                    "mapping_version": row["mapping_version"],
                    "mapping_sha256": row["mapping_sha256"],
                    "rule_version": row["rule_version"],
                    "accepted_with_reason": row["decision_reason"],
                    "sources": [
                        {"file": s.get("file"), "sha256": s.get("sha256")}
                        for s in site_manifest.get("sources") or []
                    ],
                    "tables": recon.get(row["site_id"], {}),
                }
            )
        reconciliation = {
            name: {
                "rows_in": sum(s.get(name, {}).get("rows", 0) for s in recon.values()),
                "dropped_as_duplicates": sum(
                    s.get(name, {}).get("dropped", 0) for s in recon.values()
                ),
                "rows_out": merged[name].height,
            }
            for name in merged
        }
        severities = findings.group_by("severity").len().iter_rows() if findings.height else []
        manifest: dict[str, Any] = {
            "manifest": "cartreg.registry.merge",
            "manifest_version": 1,
            "merged_at": now_utc().isoformat(),
            "cartreg_version": __version__,
            "cdm_version": cdm.version,
            "rule_version": rule_version,
            "patient_keys": (
                {
                    "scheme": "hmac-sha256",
                    "pseudonymized": True,
                    "note": "patient keys and row ids are consortium pseudonyms (PSN-...)",
                }
                if secret is not None
                else {
                    "scheme": "site-local",
                    "pseudonymized": False,
                    "note": "no consortium secret given: patient keys are site-prefixed local "
                    "ids (set CARTREG_SECRET or --secret-file to pseudonymize)",
                }
            ),
            "sites": site_entries,
            "tables": table_entries,
            "reconciliation": reconciliation,
            "duplicates": {
                "candidates": resolved.height,
                "unreviewed": resolved.filter(pl.col("decision").is_null()).height,
                "linked_same": resolved.filter(pl.col("decision") == "same").height,
                "linked_distinct": resolved.filter(pl.col("decision") == "distinct").height,
                "min_probability": linkage.threshold,
                "file": "duplicates.csv",
                "linkage": linkage.summary(),
            },
            "findings": {str(s): int(n) for s, n in severities},
        }
        for extra in ("findings.json", "duplicates.csv"):
            manifest.setdefault("files", []).append(
                {"file": extra, "sha256": sha256_file(work / extra)}
            )
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        work.chmod(0o755)  # mkdtemp makes it private; the dataset is meant to be shared
        with transaction(registry):
            new_links = linkage_store.unrecorded(file_links, kept_links)
            linkage_store.record_decisions(
                registry,
                new_links,
                who=who or current_user(),
                source=f"link file {Path(links_path).name}" if links_path else "",
            )
            linkage_store.save_state(registry, linkage)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        work.rename(out_dir)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if html_path is not None:
        from dataclasses import replace

        from cartreg.reports.html import render_html

        Path(html_path).parent.mkdir(parents=True, exist_ok=True)
        # PU-001 is not run, but its guidance goes with the pairs that replace it
        shown_report = replace(report, findings=findings, rules=catalogue)
        Path(html_path).write_text(render_html(shown_report), encoding="utf-8")
    return MergeResult(
        out_dir=out_dir, manifest=manifest, findings=findings, duplicates=shown, linkage=linkage
    )
