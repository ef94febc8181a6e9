"""Store an ingested and validated submission as a new version of a site, in one transaction.

Input is an ingest output folder (``tables/<table>.parquet``, ``manifest.json``,
``findings.json``). Everything a submission writes (its row in ``submissions``, files, findings,
harmonized rows, decision) goes in one DuckDB transaction taken under the exclusive writer lock:
a submit that dies at any point leaves the registry as it was.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cartreg import __version__
from cartreg.errors import ConfigError, InputError
from cartreg.findings import SEVERITY_ORDER
from cartreg.registry.store import (
    DEFAULT_LOCK_TIMEOUT,
    Registry,
    current_user,
    now_utc,
    open_registry,
    pause_point,
    transaction,
)

if TYPE_CHECKING:
    import polars as pl

    from cartreg.cdm import CDM
    from cartreg.rules.waivers import Waiver
    from cartreg.validation import Report, TableWaiverLookup

STATUSES = ("accepted", "rejected", "noop")
PATIENTS_LOST = "REG-PATIENTS-LOST"


@dataclass(frozen=True)
class SubmitResult:
    """What a submit did: the stored version, or the earlier version it repeated (no-op)."""

    submission_id: int
    site_id: str
    version: int | None
    status: str
    noop_of_version: int | None
    n_errors: int
    n_warnings: int
    n_info: int
    rows: dict[str, int]
    inputs_sha256: str
    # what the submission did to the site's queries (opened, resolved, reopened, ...)
    query_changes: dict[str, int] = field(default_factory=dict)
    report: Report | None = None  # the version's validation report, when submit ran it
    patients_lost: int = 0  # patients of the latest accepted version missing from this one
    lost_from_version: int | None = None

    @property
    def is_noop(self) -> bool:
        return self.status == "noop"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def inputs_fingerprint(sources: list[dict[str, Any]], mapping_sha256: str) -> str:
    """One checksum of a submission's inputs: its files' sha256 (by name) and its mapping.

    A resubmission with identical files and mapping has the same fingerprint; the row counts
    and the time of the ingest play no part.
    """
    lines = sorted(f"{s.get('file')}\t{s.get('sha256')}" for s in sources)
    lines.append(f"mapping\t{mapping_sha256}")
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(
            "file not found", where=str(path), hint="is this an ingest output folder?"
        ) from None
    except (OSError, ValueError) as exc:
        raise InputError(f"unreadable JSON: {exc}", where=str(path)) from None


def load_output_findings(out_dir: Path) -> pl.DataFrame:
    """The findings.json of an ingest output folder as a finding frame."""
    import polars as pl

    from cartreg.findings import empty_findings, findings_frame

    records = _read_json(out_dir / "findings.json")
    if not isinstance(records, list):
        raise InputError(
            "findings.json must hold a JSON list", where=str(out_dir / "findings.json")
        )
    if not records:
        return empty_findings()
    return findings_frame(pl.DataFrame(records, infer_schema_length=None))


def count_severities(findings: pl.DataFrame) -> dict[str, int]:
    counts = {s: 0 for s in SEVERITY_ORDER}
    if findings.height:
        for severity, n in findings.group_by("severity").len().iter_rows():
            if severity in counts:
                counts[severity] = int(n)
    return counts


def blocks(counts: dict[str, int], fail_on: str) -> bool:
    """True when a finding at or above ``fail_on`` exists ("never" never blocks)."""
    if fail_on == "never":
        return False
    limit = SEVERITY_ORDER[fail_on]
    return any(n > 0 and SEVERITY_ORDER[s] <= limit for s, n in counts.items())


def _check_mapping_site(mapping_file: Path, data: bytes, site: str) -> None:
    """The mapping stored as a version's provenance (``data``, read from ``mapping_file``) must
    be the site's own: another site's mapping would be recorded as how this site's data was
    made."""
    from cartreg.yamlio import parse_yaml

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read file: {exc}", path=mapping_file) from None
    raw = parse_yaml(text, mapping_file)
    mapping_site = raw.get("site_id") if isinstance(raw, dict) else None
    if mapping_site is not None and str(mapping_site) != site:
        raise InputError(
            f"the mapping is for site {mapping_site}, not {site}",
            where=str(mapping_file),
            hint="give the mapping this site's output was made with (--mapping)",
        )


def _check_site(out_dir: Path, site: str, manifest: dict[str, Any], registry: Registry) -> None:
    manifest_site = manifest.get("site_id")
    if manifest_site is not None and manifest_site != site:
        raise InputError(
            f"manifest.json is for site {manifest_site}, not {site}",
            where=str(out_dir),
            hint="check --site",
        )
    for parquet in sorted((out_dir / "tables").glob("*.parquet")):
        rows = registry.conn.execute(
            "SELECT DISTINCT site_id FROM read_parquet(?) WHERE site_id IS DISTINCT FROM ?",
            [str(parquet), site],
        ).fetchall()
        if rows:
            others = ", ".join(sorted(str(r[0]) for r in rows))
            raise InputError(
                f"rows of other sites ({others}) in {parquet.name}",
                where=str(out_dir),
                hint="one submission holds one site",
            )


def _insert_table(registry: Registry, submission_id: int, table: str, parquet: Path) -> int:
    stored = registry.table_columns(table)
    present = {
        str(r[0])
        for r in registry.conn.execute(
            "DESCRIBE SELECT * FROM read_parquet(?)", [str(parquet)]
        ).fetchall()
    }
    types = dict(
        registry.conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ?",
            [f"cdm_{table}"],
        ).fetchall()
    )
    # Explicit casts: a column typed differently by the ingest fails loudly here instead of
    # being stored with a different meaning.
    select = ", ".join(
        f'CAST("{c}" AS {types[c]}) AS "{c}"'
        for c in stored
        if c in present and c != "submission_id"
    )
    if not select:
        return 0
    before = int(registry.scalar(f'SELECT count(*) FROM "cdm_{table}"'))
    registry.conn.execute(
        f'INSERT INTO "cdm_{table}" BY NAME SELECT ? AS submission_id, {select} '
        "FROM read_parquet(?)",
        [submission_id, str(parquet)],
    )
    return int(registry.scalar(f'SELECT count(*) FROM "cdm_{table}"')) - before


def _insert_findings(registry: Registry, submission_id: int, findings: pl.DataFrame) -> None:
    if findings.height == 0:
        return
    import polars as pl

    from cartreg.findings import FINDING_FIELDS, findings_frame

    frame = (
        findings_frame(findings)
        .select(FINDING_FIELDS)
        .with_columns(pl.lit(submission_id, dtype=pl.Int64).alias("submission_id"))
    )
    registry.conn.register("_cartreg_findings", frame.to_arrow())
    try:
        cols = ", ".join(f'"{c}"' for c in ("submission_id", *FINDING_FIELDS))
        registry.conn.execute(
            f"INSERT INTO submission_findings ({cols}) SELECT {cols} FROM _cartreg_findings"
        )
    finally:
        registry.conn.unregister("_cartreg_findings")


def require_patients(out_dir: Path, where: Path) -> None:
    """Refuse an ingest output without patients (an empty or header-only export)."""
    import polars as pl

    parquet = out_dir / "tables" / "patients.parquet"
    if not parquet.is_file() or pl.scan_parquet(parquet).select(pl.len()).collect().item() == 0:
        raise InputError(
            "the submission has no patients (an empty or header-only export); nothing stored",
            where=str(where),
            hint="check the export: a site's data is never replaced by an empty version",
        )


def lost_patients(registry: Registry, out_dir: Path, site: str) -> tuple[int | None, pl.DataFrame]:
    """Patients of ``site``'s latest accepted version that ``out_dir`` no longer has, as
    REG-PATIENTS-LOST error findings located where the accepted version had them; and that
    version (None when the site has no accepted version)."""
    import polars as pl

    from cartreg.findings import empty_findings, findings_frame, rule_columns

    base = registry.first_row(
        "SELECT submission_id, version FROM submissions WHERE site_id = ? "
        "AND status = 'accepted' AND version IS NOT NULL ORDER BY version DESC LIMIT 1",
        [site],
    )
    if base is None or "patients" not in registry.data_tables():
        return None, empty_findings()
    parquet = out_dir / "tables" / "patients.parquet"
    lost = registry.frame(
        "SELECT p.patient_key, p.site_id, p.source_file, p.source_row FROM cdm_patients p "
        "WHERE p.submission_id = ? AND p.patient_key IS NOT NULL AND NOT EXISTS "
        "(SELECT 1 FROM read_parquet(?) n WHERE n.patient_key = p.patient_key) "
        "ORDER BY p.patient_key",
        [base[0], str(parquet)],
    )
    if lost.height == 0:
        return int(base[1]), empty_findings()
    version = int(base[1])
    return version, findings_frame(
        lost.select(
            *rule_columns(
                PATIENTS_LOST, "error", "completeness", table="patients", column="patient_key"
            ),
            pl.col("site_id").cast(pl.String),
            pl.col("source_file").cast(pl.String),
            pl.col("source_row").cast(pl.Int64),
            pl.col("patient_key").cast(pl.String).alias("value"),
            pl.lit(
                f"patient of accepted version {version} is missing from this submission; "
                "resubmit it, or accept the loss with --accept-reason"
            ).alias("message"),
        )
    )


def submit_output(
    registry: Registry | Path | str,
    out_dir: Path | str,
    *,
    site: str,
    findings: pl.DataFrame | None = None,
    rule_version: str | None = None,
    mapping_path: Path | str | None = None,
    fail_on: str = "error",
    accept_reason: str | None = None,
    who: str | None = None,
    cdm: CDM | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    waivers: Sequence[Waiver] = (),
) -> SubmitResult:
    """Store the ingest output ``out_dir`` as the next version of ``site``.

    ``findings`` are all findings of the submission (ingest + validation); by default those of
    ``out_dir/findings.json``. With findings at or above ``fail_on`` the version is stored as
    rejected unless ``accept_reason`` is given. Identical inputs to the site's latest version
    are recorded as a no-op and store no data. A stored version updates the site's queries
    (docs/queries.md); findings of waived queries (and of ``waivers``) are stored but neither
    counted nor blocking.
    """
    if not isinstance(registry, Registry):
        with open_registry(registry, write=True, lock_timeout=lock_timeout) as opened:
            return submit_output(
                opened,
                out_dir,
                site=site,
                findings=findings,
                rule_version=rule_version,
                mapping_path=mapping_path,
                fail_on=fail_on,
                accept_reason=accept_reason,
                who=who,
                cdm=cdm,
                waivers=waivers,
            )
    from cartreg.cdm import load_cdm
    from cartreg.queries.lifecycle import apply_plan
    from cartreg.queries.submission import plan_output

    if not registry.writable:
        raise InputError("registry opened read-only", where=str(registry.path))
    out_dir = Path(out_dir)
    cdm = cdm or load_cdm()
    manifest = _read_json(out_dir / "manifest.json")
    if not isinstance(manifest, dict):
        raise InputError("manifest.json must hold a JSON object", where=str(out_dir))
    if findings is None:
        findings = load_output_findings(out_dir)
    mapping_text: str | None = None
    mapping_sha = ""
    if mapping_path is not None:
        mapping_file = Path(mapping_path)
        try:  # a few kB: read once, then checked, hashed and kept
            mapping_data = mapping_file.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read file: {exc.strerror}", path=mapping_file) from None
        _check_mapping_site(mapping_file, mapping_data, site)
        mapping_sha = hashlib.sha256(mapping_data).hexdigest()
        mapping_text = mapping_data.decode("utf-8", errors="replace")
    sources = [s for s in manifest.get("sources") or [] if isinstance(s, dict)]
    fingerprint = inputs_fingerprint(sources, mapping_sha)
    _check_site(out_dir, site, manifest, registry)
    require_patients(out_dir, out_dir)
    # A resubmission that drops patients of the accepted version is not accepted silently,
    # whatever --fail-on says: each lost patient is an error finding, and only an explicit
    # --accept-reason accepts the version.
    lost_from, lost = lost_patients(registry, out_dir, site)
    if lost.height:
        import polars as pl

        findings = pl.concat([findings, lost], how="vertical_relaxed")
    who = who or current_user()
    when = now_utc()
    plan = plan_output(
        registry,
        out_dir,
        site=site,
        findings=findings,
        cdm=cdm,
        when=when,
        mapping_path=mapping_path,
        waivers=waivers,
    )
    counts = count_severities(findings.filter(~findings["finding_id"].is_in(plan.suppressed_ids)))
    blocked = blocks(counts, fail_on) or lost.height > 0

    pause_point("locked")
    with transaction(registry):
        pause_point("begin")
        registry.ensure_cdm_tables(cdm)
        submission_id = int(
            registry.scalar("SELECT coalesce(max(submission_id), 0) + 1 FROM submissions")
        )
        latest = registry.first_row(
            "SELECT submission_id, version, inputs_sha256 FROM submissions "
            "WHERE site_id = ? AND version IS NOT NULL ORDER BY version DESC LIMIT 1",
            [site],
        )
        common = [
            submission_id,
            site,
            when,
            who,
            __version__,
            manifest.get("cdm_version") or cdm.version,
            manifest.get("mapping_version"),
            mapping_sha or None,
            mapping_text,
            rule_version,
            fail_on,
            fingerprint,
            counts["error"],
            counts["warning"],
            counts["info"],
            json.dumps(manifest, sort_keys=True),
        ]
        insert = (
            "INSERT INTO submissions (submission_id, site_id, submitted_at, submitted_by, "
            "cartreg_version, cdm_version, mapping_version, mapping_sha256, mapping_text, "
            "rule_version, fail_on, inputs_sha256, n_errors, n_warnings, n_info, manifest_json, "
            "version, status, noop_of, decision_reason) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        if latest is not None and latest[2] == fingerprint:
            registry.conn.execute(insert, [*common, None, "noop", latest[0], None])
            return SubmitResult(
                submission_id,
                site,
                None,
                "noop",
                int(latest[1]),
                counts["error"],
                counts["warning"],
                counts["info"],
                {},
                fingerprint,
            )
        version = 1 if latest is None else int(latest[1]) + 1
        status = "rejected" if blocked and not accept_reason else "accepted"
        reason = accept_reason if blocked else None
        registry.conn.execute(insert, [*common, version, status, None, reason])
        for source in sources:
            registry.conn.execute(
                "INSERT INTO submission_files VALUES (?, ?, ?, ?, ?, ?)",
                [
                    submission_id,
                    str(source.get("file")),
                    source.get("sha256"),
                    source.get("rows_read"),
                    source.get("rows_harmonized"),
                    source.get("rows_quarantined"),
                ],
            )
        if blocked and accept_reason:
            registry.conn.execute(
                "INSERT INTO decisions VALUES (?, ?, ?, 'accepted', ?)",
                [submission_id, when, who, accept_reason],
            )
        _insert_findings(registry, submission_id, findings)
        apply_plan(
            registry, plan, submission_id=submission_id, version=version, actor=who, when=when
        )
        pause_point("findings")
        rows: dict[str, int] = {}
        for name in cdm.tables:
            parquet = out_dir / "tables" / f"{name}.parquet"
            rows[name] = (
                _insert_table(registry, submission_id, name, parquet) if parquet.is_file() else 0
            )
            registry.conn.execute(
                "INSERT INTO submission_tables VALUES (?, ?, ?)", [submission_id, name, rows[name]]
            )
            pause_point(f"table:{name}")
        pause_point("before_commit")
    pause_point("committed")
    return SubmitResult(
        submission_id,
        site,
        version,
        status,
        None,
        counts["error"],
        counts["warning"],
        counts["info"],
        rows,
        fingerprint,
        query_changes=plan.changes(),
        patients_lost=lost.height,
        lost_from_version=lost_from if lost.height else None,
    )


def decide(
    registry: Registry | Path | str,
    *,
    site: str,
    version: int,
    status: str,
    reason: str,
    who: str | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> None:
    """Accept or reject a stored version, with a reason kept in the decision log."""
    if status not in ("accepted", "rejected"):
        raise InputError(f"unknown decision {status!r}", hint="accepted or rejected")
    if not reason.strip():
        raise InputError("a decision needs a reason", hint="pass --reason")
    if not isinstance(registry, Registry):
        with open_registry(registry, write=True, lock_timeout=lock_timeout) as opened:
            decide(opened, site=site, version=version, status=status, reason=reason, who=who)
            return
    row = registry.first_row(
        "SELECT submission_id FROM submissions WHERE site_id = ? AND version = ?", [site, version]
    )
    if row is None:
        raise InputError(
            f"site {site} has no version {version}",
            where=str(registry.path),
            hint="see `cartreg registry status`",
        )
    with transaction(registry):
        registry.conn.execute(
            "UPDATE submissions SET status = ?, decision_reason = ? WHERE submission_id = ?",
            [status, reason, row[0]],
        )
        registry.conn.execute(
            "INSERT INTO decisions VALUES (?, ?, ?, ?, ?)",
            [row[0], now_utc(), who or current_user(), status, reason],
        )


def validate_output(out_dir: Path | str, *, cdm: CDM | None = None) -> tuple[pl.DataFrame, str]:
    """All findings on an ingest output folder (ingest, CDM schema and data-quality rules, as
    ``cartreg validate`` reports them) and the version of the rule catalog used."""
    from cartreg import validation
    from cartreg.registry.merge import rule_catalog_version

    report = validation.validate_output(Path(out_dir), cdm=cdm)
    return report.findings, rule_catalog_version()


def validate_for_submit(
    out_dir: Path | str,
    *,
    cdm: CDM,
    when: datetime,
    waive: TableWaiverLookup | None = None,
    waivers: Sequence[Waiver] = (),
    ingest_findings: pl.DataFrame | None = None,
) -> tuple[Report, pl.DataFrame]:
    """The validation report of an ingest output as a submit at ``when`` shows it (findings of
    waived queries hidden through ``waive``), and every finding the submit stores.

    Reads no registry: the caller takes the query snapshot (``report_waivers``) first.
    """
    import polars as pl

    from cartreg import validation
    from cartreg.findings import FINDING_FIELDS

    report = validation.validate_output(
        Path(out_dir),
        cdm=cdm,
        waivers=waivers,
        waive=waive,
        as_of=when.date(),
        generated_at=when.replace(microsecond=0).isoformat(),
    )
    parts = [
        f.select(FINDING_FIELDS)
        for f in (ingest_findings, report.findings, report.waived)
        if f is not None and f.height
    ]
    findings = (
        pl.concat(parts, how="vertical_relaxed").unique(
            "finding_id", keep="first", maintain_order=True
        )
        if parts
        else load_output_findings(Path(out_dir))
    )
    return report, findings


def validate_and_submit(
    registry: Path | str,
    out_dir: Path | str,
    *,
    site: str,
    mapping_path: Path | str,
    ingest_findings: pl.DataFrame | None = None,
    fail_on: str = "error",
    accept_reason: str | None = None,
    who: str | None = None,
    cdm: CDM | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    waivers: Sequence[Waiver] = (),
) -> SubmitResult:
    """Validate the ingest output ``out_dir`` and store it as the site's next version.

    The report hides the findings of the site's waived queries (and of ``waivers``) as waived;
    they are stored with the version all the same. The result carries the report.
    """
    from cartreg.cdm import load_cdm
    from cartreg.queries.submission import report_waivers
    from cartreg.registry.merge import rule_catalog_version

    cdm = cdm or load_cdm()
    when = now_utc()
    waive = report_waivers(
        registry,
        site=site,
        cdm=cdm,
        when=when,
        out_dir=out_dir,
        mapping_path=mapping_path,
        waivers=waivers,
        lock_timeout=lock_timeout,
    )
    report, findings = validate_for_submit(
        out_dir, cdm=cdm, when=when, waive=waive, waivers=waivers, ingest_findings=ingest_findings
    )
    result = submit_output(
        registry,
        out_dir,
        site=site,
        findings=findings,
        rule_version=rule_catalog_version(),
        mapping_path=mapping_path,
        fail_on=fail_on,
        accept_reason=accept_reason,
        who=who,
        cdm=cdm,
        lock_timeout=lock_timeout,
        waivers=waivers,
    )
    return replace(result, report=report)


def submit_submission(
    registry: Path | str,
    submission_dir: Path | str,
    *,
    site: str,
    mapping_path: Path | str,
    fail_on: str = "error",
    accept_reason: str | None = None,
    who: str | None = None,
    keep_output: Path | str | None = None,
    cdm: CDM | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    waivers: Sequence[Waiver] = (),
) -> SubmitResult:
    """Ingest ``submission_dir`` with its mapping, validate it, and store it as a new version.

    Ingest and validation run before the registry is locked; only the store is transactional.
    The ingest output goes to a temporary folder unless ``keep_output`` names one.
    """
    import importlib
    import shutil
    import tempfile

    from cartreg.cdm import load_cdm
    from cartreg.errors import CartregError

    try:
        ingest: Any = importlib.import_module("cartreg.ingest")
        ingest_submission = ingest.ingest_submission
    except (ImportError, AttributeError):
        raise CartregError(
            "the ingest engine (cartreg.ingest.ingest_submission) is not installed",
            hint="ingest elsewhere and use `cartreg registry store OUT_DIR`",
        ) from None
    cdm = cdm or load_cdm()
    work = Path(tempfile.mkdtemp(prefix="cartreg-submit-"))
    out_dir = Path(keep_output) if keep_output is not None else work / "out"
    try:
        result = ingest_submission(Path(submission_dir), Path(mapping_path), out_dir, cdm=cdm)
        require_patients(out_dir, Path(submission_dir))
        return validate_and_submit(
            registry,
            out_dir,
            site=site,
            mapping_path=mapping_path,
            ingest_findings=result.findings,
            fail_on=fail_on,
            accept_reason=accept_reason,
            who=who,
            cdm=cdm,
            lock_timeout=lock_timeout,
            waivers=waivers,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
