"""Merge the latest accepted version of each site into one consortium dataset.

Output folder (written to a temporary sibling, then renamed, so a failed merge leaves nothing
half-written)::

    OUT/tables/<table>.parquet   every CDM table, all sites
    OUT/manifest.json            site versions that went in, row reconciliation, file sha256
    OUT/findings.json            CDM + data-quality findings on the merged whole, PU-001 pairs
    OUT/duplicates.csv           candidate cross-site duplicates with scores and decisions

Patient keys (and the row ids that embed them) are HMAC pseudonyms when a consortium secret is
given; otherwise they stay site-prefixed local ids and the manifest says so.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from cartreg import __version__, spreadsheet
from cartreg.errors import InputError
from cartreg.findings import empty_findings, sort_findings
from cartreg.redact import redact_findings
from cartreg.registry import duplicates as dup
from cartreg.registry.pseudonym import pseudonymize_tables
from cartreg.registry.store import DEFAULT_LOCK_TIMEOUT, Registry, now_utc, open_registry
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
        order = ", ".join(f'"{c}"' for c in ("site_id", *spec.primary_key) if c in cols)
        tables[spec.name] = registry.frame(
            f'SELECT {select} FROM "cdm_{spec.name}" WHERE submission_id IN ({placeholders}) '
            f"ORDER BY {order}",
            submission_ids,
        )
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


def rule_findings(tables: dict[str, pl.DataFrame], cdm: CDM) -> tuple[pl.DataFrame, str]:
    """Run the data-quality rules (cross-site ones included) on the given tables."""
    from cartreg.rules import run_rules

    return run_rules(tables, cdm=cdm).findings, rule_catalog_version()


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
    window_days: int = dup.DEFAULT_WINDOW_DAYS,
    min_score: float = dup.DEFAULT_MIN_SCORE,
    overwrite: bool = False,
    cdm: CDM | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> MergeResult:
    """Merge the latest accepted version of every site into ``out_dir``."""
    if not isinstance(registry, Registry):
        with open_registry(registry, lock_timeout=lock_timeout) as opened:
            return merge_registry(
                opened,
                out_dir,
                secret=secret,
                links_path=links_path,
                window_days=window_days,
                min_score=min_score,
                overwrite=overwrite,
                cdm=cdm,
            )
    from cartreg.cdm import load_cdm, validate_tables

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
    candidates = dup.find_duplicates(tables, window_days=window_days, min_score=min_score)
    aliases: pl.DataFrame | None = None
    if secret is not None:
        published, aliases = pseudonymize_tables(tables, secret)
    else:
        published = tables
    resolved = dup.resolve(
        candidates,
        links
        if links is not None
        else pl.DataFrame(schema=dict.fromkeys(dup.LINK_COLUMNS, pl.String)),
        aliases,
    )
    dropped_keys = resolved.filter(pl.col("drop").is_not_null())["drop"].unique().to_list()

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

    if aliases is not None and aliases.height:
        to_psn = dict(
            zip(aliases["patient_key"].to_list(), aliases["pseudonym"].to_list(), strict=True)
        )
        shown = resolved.with_columns(
            pl.col(c).replace(to_psn) for c in ("key_a", "key_b", "keep", "drop")
        ).pipe(dup.with_pair_ids)
    else:
        shown = resolved
    findings_parts = [
        validate_tables(merged, cdm=cdm),
        dup.duplicate_findings(shown, published),
    ]
    rule_found, rule_version = rule_findings(merged, cdm)
    # The catalog's PU-001 flags both records of every pair and knows nothing of reviewed
    # links; the scored, link-aware pairs above replace it in a merge.
    findings_parts.append(rule_found.filter(pl.col("rule_id") != dup.RULE_ID))
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
        spreadsheet.write_csv(
            shown.select(
                "pair_id",
                "site_a",
                "key_a",
                "site_b",
                "key_b",
                "score",
                "days_apart",
                "evidence",
                "decision",
                "keep",
                "reason",
                "reviewer",
            ),
            work / "duplicates.csv",
        )
        (work / "findings.json").write_text(
            json.dumps(redact_findings(findings).to_dicts(), indent=2, default=str) + "\n",
            encoding="utf-8",
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
                "window_days": window_days,
                "min_score": min_score,
                "file": "duplicates.csv",
            },
            "findings": {str(s): int(n) for s, n in severities},
        }
        for extra in ("findings.json", "duplicates.csv"):
            manifest.setdefault("files", []).append(
                {"file": extra, "sha256": sha256_file(work / extra)}
            )
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        work.chmod(0o755)  # mkdtemp makes it private; the dataset is meant to be shared
        if out_dir.exists():
            shutil.rmtree(out_dir)
        work.rename(out_dir)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return MergeResult(out_dir=out_dir, manifest=manifest, findings=findings, duplicates=shown)
