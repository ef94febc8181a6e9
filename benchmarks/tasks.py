"""Benchmark tasks, each run in its own fresh process so its peak RSS is its own.

``python -m benchmarks.tasks TASK [ARGS…]`` prints one JSON object:
``{"seconds": …, "peak_rss_mb": …, "detail": {…}}``. Only the measured operation is inside the
timer; loading inputs that the operation does not itself read is outside it.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TASKS: dict[str, Callable[..., dict[str, Any]]] = {}


def task(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    TASKS[fn.__name__.replace("_", "-")] = fn
    return fn


def _timed(operation: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = operation()
    return time.perf_counter() - start, value


@task
def read_csv(*files: str) -> dict[str, Any]:
    """Floor: polars reads the export CSV files with its defaults."""
    import polars as pl

    seconds, rows = _timed(lambda: sum(pl.read_csv(f).height for f in files))
    return {"seconds": seconds, "detail": {"rows": rows}}


@task
def read_parquet(*folders: str) -> dict[str, Any]:
    """Floor: polars reads every harmonized table from Parquet (in each folder given)."""
    import polars as pl

    paths = sorted(p for folder in folders for p in Path(folder).glob("*.parquet"))
    seconds, rows = _timed(lambda: sum(pl.read_parquet(p).height for p in paths))
    return {"seconds": seconds, "detail": {"rows": rows, "tables": len(paths)}}


@task
def ingest(submission: str, mapping: str) -> dict[str, Any]:
    """cartreg ingest as issue 8 defines the task (read + map + parse): the export read, mapped,
    parsed and derived into the CDM tables, findings and quarantine, in memory."""
    from cartreg.ingest import ingest_submission

    seconds, result = _timed(lambda: ingest_submission(Path(submission), Path(mapping), None))
    rows = sum(t.height for t in result.tables.values())
    return {"seconds": seconds, "detail": {"rows_out": rows, "findings": result.findings.height}}


@task
def ingest_write(submission: str, mapping: str, out: str) -> dict[str, Any]:
    """The whole `cartreg ingest` command: ``ingest`` plus writing the Parquet tables,
    quarantine, findings.json and manifest.json."""
    from cartreg.ingest import ingest_submission

    seconds, result = _timed(lambda: ingest_submission(Path(submission), Path(mapping), Path(out)))
    rows = sum(t.height for t in result.tables.values())
    return {"seconds": seconds, "detail": {"rows_out": rows, "findings": result.findings.height}}


@task
def validate(folder: str) -> dict[str, Any]:
    """cartreg validation as `cartreg validate` runs it: read the tables, CDM schema checks
    (pandera) and all data-quality rules, combined into one report."""
    import polars as pl

    from cartreg.cdm import load_cdm
    from cartreg.cdm.validate import find_table_files
    from cartreg.validation import build_report

    cdm = load_cdm()

    def run() -> int:
        files = find_table_files(Path(folder), cdm)
        tables = {name: pl.read_parquet(path) for name, path in files.items()}
        return build_report(tables, cdm=cdm).findings.height

    seconds, found = _timed(run)
    return {"seconds": seconds, "detail": {"findings": found}}


@task
def peer(engine: str, parquet: str) -> dict[str, Any]:
    """One table's shared checks in one engine (cartreg/pandera/gx/dataframely/pointblank).

    Every engine is warmed up once on the first 1,000 rows before the timed run, so one-time
    set-up (pandera's first call, GX's first validation) is excluded for all engines alike.
    """
    import polars as pl

    from benchmarks import peers

    full = peers.inject_defects(pl.read_parquet(parquet))
    checks = peers.shared_checks()
    columns = sorted({c.column for c in checks} | {"source_row"})

    def make(frame: pl.DataFrame) -> Callable[[], int]:
        if engine == "cartreg":
            from cartreg.cdm import load_cdm, validate_table

            cdm = load_cdm()
            return lambda: validate_table(peers.TABLE, frame, cdm=cdm).height
        if engine == "gx":
            run, _ = peers.gx_validator(checks, frame.select(columns))
            return run
        builder = {
            "pandera": peers.pandera_validator,
            "dataframely": peers.dataframely_validator,
            "pointblank": peers.pointblank_validator,
        }[engine]
        return builder(checks, frame.select(columns))

    make(full.head(1000))()
    seconds, found = _timed(make(full))
    label = "full CDM schema of the table" if engine == "cartreg" else len(checks)
    return {"seconds": seconds, "detail": {"failing": found, "checks": label}}


@task
def command(*argv: str) -> dict[str, Any]:
    """A whole command in a child process (start-up included), e.g. `cartreg --help`."""
    seconds, proc = _timed(
        lambda: subprocess.run(list(argv), capture_output=True, text=True, check=False)
    )
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"seconds": seconds, "peak_rss_mb": child, "detail": {"exit_code": proc.returncode}}


SITES = ("redcap_a", "excel_b", "ehr_c", "deid_d")  # one site per export layout


@task
def read_exports(sites: str) -> dict[str, Any]:
    """Floor for the end-to-end check: polars reads every export file of every site (CSV files
    as text, since type inference fails on these mixed exports; every sheet of the Excel
    workbooks with its defaults)."""
    import polars as pl

    def run() -> int:
        rows = 0
        for path in sorted(Path(sites).rglob("*")):
            if path.suffix == ".csv":
                rows += pl.read_csv(path, infer_schema=False).height
            elif path.suffix == ".xlsx":
                sheets = pl.read_excel(path, sheet_id=0)
                rows += sum(frame.height for frame in sheets.values())
        return rows

    seconds, rows = _timed(run)
    return {"seconds": seconds, "detail": {"rows": rows}}


def _cartreg(*argv: str) -> subprocess.CompletedProcess[str]:
    cartreg = str(Path(sys.executable).parent / "cartreg")
    proc = subprocess.run([cartreg, *argv], capture_output=True, text=True, check=False)
    if proc.returncode not in (0, 1):  # 1: findings at or above --fail-on, still a full run
        raise RuntimeError(f"cartreg {argv[0]} failed: {proc.stderr.strip()[-500:]}")
    return proc


@task
def check_sites(sites: str, mappings: str, out: str) -> dict[str, Any]:
    """End to end `cartreg check` of every site, one command per site as a coordinator runs
    it (start-up, ingest, validation and the JSON report included)."""

    def run() -> int:
        for site in SITES:
            _cartreg(
                "check",
                str(Path(sites) / site),
                "--mapping",
                str(Path(mappings) / site / "mapping.yaml"),
                "--out",
                str(Path(out) / site),
                "--format",
                "json",
                "--report",
                str(Path(out) / f"{site}.json"),
                "--fail-on",
                "never",
            )
        return len(SITES)

    seconds, count = _timed(run)
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"seconds": seconds, "peak_rss_mb": child, "detail": {"sites": count}}


@task
def merge_sites(checked: str, mappings: str, work: str) -> dict[str, Any]:
    """End to end registry: `registry init`, `registry store` (accepted) of every checked site,
    then `registry merge` into one pseudonymized dataset. The detail gives the merge command's
    own time beside the whole."""
    folder = Path(work)
    folder.mkdir(parents=True, exist_ok=True)
    registry, secret = folder / "registry.duckdb", folder / "consortium.secret"
    registry.unlink(missing_ok=True)
    shutil.rmtree(folder / "merged", ignore_errors=True)  # from an earlier repeat
    secret.write_text("benchmark-secret-not-for-real-use\n", encoding="utf-8")

    merge_seconds: list[float] = []

    def run() -> int:
        _cartreg("registry", "init", str(registry))
        for site in SITES:
            _cartreg(
                "registry",
                "store",
                str(Path(checked) / site),
                "--site",
                site.upper(),  # the site_id of its mapping
                "--mapping",
                str(Path(mappings) / site / "mapping.yaml"),
                "--registry",
                str(registry),
                "--accept-reason",
                "benchmark",
            )
        start = time.perf_counter()
        _cartreg(
            "registry",
            "merge",
            "--registry",
            str(registry),
            "--out",
            str(folder / "merged"),
            "--secret-file",
            str(secret),
            "--fail-on",
            "never",
        )
        merge_seconds.append(time.perf_counter() - start)
        return len(SITES)

    seconds, _ = _timed(run)
    import polars as pl

    tables = sorted((folder / "merged").rglob("*.parquet"))
    rows = sum(pl.scan_parquet(p).select(pl.len()).collect().item() for p in tables)
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    detail = {"merged_rows": rows, "merge_command_s": round(merge_seconds[0], 4)}
    return {"seconds": seconds, "peak_rss_mb": child, "detail": detail}


# what a minimal registry export gives: sex, birth year, age, infusion year and product
MINIMAL_DROPPED = {
    "patients": (
        "birth_date",
        "diagnosis_date",
        "diagnosis_day",
        "ph_status",
        "n_prior_lines",
        "prior_allohct",
        "prior_blinatumomab",
        "prior_inotuzumab",
    ),
    "car_t_infusions": ("infusion_date",),
    "progression_events": ("progression_date", "progression_day"),
    "follow_up": ("death_date", "death_day"),
}


def _linkage_tables(source: Path, evidence: str = "as_recorded") -> dict[str, Any]:
    """The patients and index infusions of a consortium: the harmonized tables of each site
    (``source/<site>/tables``), or truth tables (``source/*.parquet``) with what the
    de-identified layout leaves out (calendar dates) removed, as its ingest would. With
    ``evidence="minimal"`` every site gives only what a minimal registry export would."""
    import polars as pl

    tables = _recorded_tables(source)
    if evidence == "minimal":
        for name, columns in MINIMAL_DROPPED.items():
            tables[name] = tables[name].with_columns(pl.lit(None).alias(c) for c in columns)
    return tables


# what the linkage reads: patients, index infusions, first progression and death
_LINKAGE_TABLES = ("patients", "car_t_infusions", "progression_events", "follow_up")
# calendar dates the de-identified layout leaves out (it gives years and day offsets)
_DEID_DATES = {
    "patients": ("birth_date", "diagnosis_date"),
    "car_t_infusions": ("infusion_date",),
    "progression_events": ("progression_date",),
    "follow_up": ("death_date",),
}


def _recorded_tables(source: Path) -> dict[str, Any]:
    import polars as pl

    if (source / "patients.parquet").is_file():
        deid = pl.col("site_id").str.starts_with("DEID_")
        return {
            name: pl.read_parquet(source / f"{name}.parquet").with_columns(
                pl.when(deid).then(None).otherwise(pl.col(c)).alias(c) for c in _DEID_DATES[name]
            )
            for name in _LINKAGE_TABLES
        }
    tables = {}
    for name in _LINKAGE_TABLES:
        parts = [pl.read_parquet(p) for p in sorted(source.glob(f"*/tables/{name}.parquet"))]
        tables[name] = pl.concat(parts, how="diagonal_relaxed")
    return tables


def _pair_keys(frame: Any, a: str, b: str) -> Any:
    import polars as pl

    return frame.select(
        pl.min_horizontal(a, b).alias("lo"), pl.max_horizontal(a, b).alias("hi")
    ).unique()


@task
def linkage(source: str, truth: str, evidence: str = "as_recorded") -> dict[str, Any]:
    """Cross-site duplicates of a consortium by `registry merge`'s linkage (splink, expert
    weights, capacity estimate), scored against the simulator's truth pairs: precision and
    recall of the listed pairs, overall and for pairs with a site that gives no calendar dates,
    beside the capacity estimate of each pair of sites."""
    import polars as pl

    from cartreg.registry.duplicates import link_patients

    tables = _linkage_tables(Path(source), evidence)
    seconds, result = _timed(lambda: link_patients(tables))
    listed = _pair_keys(result.pairs, "key_a", "key_b").with_columns(pl.lit(True).alias("listed"))
    true = _pair_keys(pl.read_csv(truth), "patient_key_a", "patient_key_b").with_columns(
        pl.lit(True).alias("true")
    )
    dated = (
        tables["car_t_infusions"]
        .group_by("site_id")
        .agg(pl.col("infusion_date").is_not_null().mean() >= 0.5)
        .filter(pl.col("infusion_date"))["site_id"]
        .to_list()
    )
    site = pl.col("lo").str.extract(r"^([A-Z0-9_]+?)-", 1)
    other = pl.col("hi").str.extract(r"^([A-Z0-9_]+?)-", 1)
    both = (
        listed.join(true, on=["lo", "hi"], how="full", coalesce=True)
        .with_columns(pl.col("listed", "true").fill_null(False))
        .with_columns(
            pl.when(site.is_in(dated) & other.is_in(dated))
            .then(pl.lit("dated"))
            .otherwise(pl.lit("year_only"))
            .alias("evidence")
        )
    )

    def scores(frame: pl.DataFrame) -> dict[str, Any]:
        tp = frame.filter(pl.col("listed") & pl.col("true")).height
        n_listed, n_true = frame["listed"].sum(), frame["true"].sum()
        return {
            "true_pairs": int(n_true),
            "listed": int(n_listed),
            "precision": round(tp / n_listed, 4) if n_listed else None,
            "recall": round(tp / n_true, 4) if n_true else None,
        }

    capacity = result.capacity.with_columns(
        pl.when(pl.col("site_a").is_in(dated) & pl.col("site_b").is_in(dated))
        .then(pl.lit("dated"))
        .otherwise(pl.lit("year_only"))
        .alias("evidence_class")
    )
    predicted = {
        cls: {
            "predicted_recall": round(float(group["predicted_recall"].mean()), 4),
            "capacity_warning": bool((~group["separable"]).any()),
        }
        for (cls,), group in capacity.group_by("evidence_class")
    }
    detail = {
        "patients": result.records,
        "threshold": result.threshold,
        **scores(both),
        "by_evidence": {
            cls: {**scores(both.filter(pl.col("evidence") == cls)), **predicted.get(cls, {})}
            for cls in ("dated", "year_only")
            if both.filter(pl.col("evidence") == cls).height or cls in predicted
        },
        "beyond_capacity": result.summary()["beyond_capacity"],
    }
    return {"seconds": seconds, "detail": detail}


def main(argv: list[str]) -> None:
    name, *args = argv
    result = TASKS[name](*args)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    result.setdefault("peak_rss_mb", own)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
