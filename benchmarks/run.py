"""Benchmark harness entry point.

    python -m benchmarks.run --sizes 100k,1m --repeat 3 --out results/

For each size (counted in harmonized event rows) it synthesizes a multi-site cohort with
``cartreg synth``, then measures, each task in a fresh process and repeated: the polars floors
(read_csv of the export, read_parquet of the harmonized tables), cartreg ingest, cartreg
validation, the same single-table checks in pandera, Great Expectations, dataframely and
pointblank, ``cartreg check`` of four sites and their registry merge end to end, and
``cartreg --help``. It writes ``benchmarks.json`` and ``benchmarks.md`` with
medians, min/max, ratios to the floor and to each anchor, library versions, the machine, and
whether each target is met. No timing is asserted anywhere: the numbers are for reading.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PEERS = ("cartreg", "pandera", "dataframely", "pointblank", "gx")
LIBRARIES = (
    "cartreg",
    "polars",
    "pandera",
    "duckdb",
    "great-expectations",
    "dataframely",
    "pointblank",
    "lifelines",
)
# the one-row-per-event CSV layout: the export whose ingest speed matters most
EXPORT_SITE = "ehr_c"
SITE_DIRS = ("redcap_a", "excel_b", "ehr_c", "deid_d")  # `cartreg synth --sites 4`
PILOT = 400  # patients in the small cohorts used to size the real ones


@dataclass
class Measure:
    name: str
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def seconds(self) -> list[float]:
        return [r["seconds"] for r in self.runs]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def to_dict(self) -> dict[str, Any]:
        return {
            "median_s": round(self.median, 4),
            "min_s": round(min(self.seconds), 4),
            "max_s": round(max(self.seconds), 4),
            "peak_rss_mb": round(max(r["peak_rss_mb"] for r in self.runs), 1),
            "runs": len(self.runs),
            "detail": self.runs[-1].get("detail", {}),
        }


def parse_size(text: str) -> int:
    text = text.strip().lower()
    factor = {"k": 1_000, "m": 1_000_000}.get(text[-1], 1)
    return int(float(text.rstrip("km")) * factor)


def run_task(args: list[str], repeat: int) -> Measure:
    measure = Measure(" ".join(args))
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
    for _ in range(repeat):
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.tasks", *args],
            capture_output=True,
            text=True,
            check=False,
            cwd=REPO,
            env=env,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"task {args[0]} failed: {proc.stderr.strip().splitlines()[-1:]}")
        measure.runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return measure


def _synth(patients: int, out: Path, seed: int, *extra: str) -> None:
    cartreg = str(Path(sys.executable).parent / "cartreg")
    cmd = [cartreg, "synth", "--patients", str(patients), "--seed", str(seed), "--out", str(out)]
    subprocess.run([*cmd, *extra], check=True, capture_output=True)


def _event_rows(truth: Path) -> int:
    import polars as pl

    events = [p for p in truth.glob("*.parquet") if p.stem not in ("patients", "follow_up")]
    return sum(pl.scan_parquet(p).select(pl.len()).collect().item() for p in events)


def _csv_rows(folder: Path) -> int:
    import polars as pl

    return sum(pl.scan_csv(p).select(pl.len()).collect().item() for p in folder.glob("*.csv"))


def consortium(event_rows: int, work: Path, seed: int) -> Path:
    """Harmonized truth tables of a 4-site cohort with about ``event_rows`` event rows."""
    out = work / f"consortium_{event_rows}"
    if not (out / "truth").is_dir():
        _synth(_patients_for(event_rows, work, seed), out, seed, "--sites", "4", "--truth-only")
    return out / "truth"


def _patients_for(event_rows: int, work: Path, seed: int) -> int:
    """Patients of a 4-site cohort with about ``event_rows`` event rows (from a pilot cohort)."""
    pilot = work / "pilot_consortium"
    if not (pilot / "truth").is_dir():
        _synth(PILOT, pilot, seed, "--sites", "4", "--truth-only")
    return max(40, round(event_rows * PILOT / _event_rows(pilot / "truth")))


def many_sites(event_rows: int, work: Path, seed: int) -> Path:
    """Exports of a 4-site cohort (one per layout: REDCap, Excel, EHR, de-identified) whose
    harmonized event tables hold about ``event_rows`` rows, for the end-to-end tasks."""
    out = work / f"sites_{event_rows}"
    if not (out / "sites").is_dir():
        _synth(_patients_for(event_rows, work, seed), out, seed, "--sites", "4")
    return out / "sites"


def export_site(csv_rows: int, work: Path, seed: int) -> Path:
    """One EHR-layout site export whose CSV files hold about ``csv_rows`` rows."""
    out = work / f"export_{csv_rows}"
    if not (out / "sites").is_dir():
        pilot = work / "pilot_export"
        if not (pilot / "sites").is_dir():
            _synth(PILOT, pilot, seed, "--sites", "1", "--layouts", "ehr")
        per_patient = _csv_rows(next((pilot / "sites").iterdir())) / PILOT
        patients = max(40, round(csv_rows / per_patient))
        _synth(patients, out, seed, "--sites", "1", "--layouts", "ehr")
    return next((out / "sites").iterdir())


DUPLICATE_RATE = "0.05"
# consortia for the linkage tasks: the four export layouts (one de-identified site that gives
# years and day offsets only), and four sites that all give calendar dates
CONSORTIA = {
    "four_layouts": ("redcap,excel,ehr,deid", ("redcap_a", "excel_b", "ehr_c", "deid_d")),
    "dated_sites": ("redcap,excel,ehr", ("redcap_a", "excel_b", "ehr_c", "redcap_d")),
}


def linkage_consortium(patients: int, name: str, work: Path, seed: int) -> tuple[Path, Path]:
    """Site exports with planted cross-site duplicates, each harmonized by `cartreg ingest`
    with its sample mapping (a fourth REDCap site uses the REDCap mapping under its own site
    id). Returns the folder of ingest outputs and the truth pairs."""
    out = work / f"linkage_{name}_{patients}"
    ingested = out / "ingested"
    layouts, folders = CONSORTIA[name]
    if not (ingested / folders[-1] / "tables").is_dir():
        shutil.rmtree(out, ignore_errors=True)
        _synth(
            patients,
            out,
            seed,
            "--sites",
            "4",
            "--layouts",
            layouts,
            "--duplicate-rate",
            DUPLICATE_RATE,
            "--clean",
        )
        cartreg = str(Path(sys.executable).parent / "cartreg")
        for folder in folders:
            mapping = REPO / "sample_data" / folder / "mapping.yaml"
            if not mapping.is_file():  # the same EDC template at another site
                text = (REPO / "sample_data" / "redcap_a" / "mapping.yaml").read_text()
                mapping = out / f"{folder}.mapping.yaml"
                mapping.write_text(text.replace("site_id: REDCAP_A", f"site_id: {folder.upper()}"))
            args = [cartreg, "ingest", str(out / "sites" / folder), "--mapping", str(mapping)]
            out_args = ["--out", str(ingested / folder), "--quiet", "--fail-on", "never"]
            subprocess.run([*args, *out_args], check=True)
    return ingested, out / "truth" / "duplicates.csv"


def capacity_cohort(patients: int, work: Path, seed: int) -> tuple[Path, Path]:
    """Truth tables of a four-layout consortium with planted duplicates (no exports: large
    sizes are linked from the truth, with the de-identified site's dates removed)."""
    out = work / f"capacity_{patients}"
    if not (out / "truth" / "duplicates.csv").is_file():
        _synth(
            patients, out, seed, "--sites", "4", "--duplicate-rate", DUPLICATE_RATE, "--truth-only"
        )
    return out / "truth", out / "truth" / "duplicates.csv"


def bench_linkage(
    sizes: list[int], capacity: list[int], work: Path, seed: int, minimal: list[int] | None = None
) -> dict[str, Any]:
    """Precision and recall of the listed duplicate pairs and the linkage time, per consortium
    and size; the capacity estimate against the recall measured as the consortium grows, with
    what the sites record and with a minimal export (sex, birth year, age, infusion year,
    product), whose evidence runs out at a few thousand patients."""
    result: dict[str, Any] = {"accuracy": {}, "capacity": {}, "minimal": {}}
    for patients in sizes:
        for name in CONSORTIA:
            print(f"linking {patients:,} patients ({name}) …", file=sys.stderr)
            source, truth = linkage_consortium(patients, name, work, seed)
            task = run_task(["linkage", str(source), str(truth)], 1).to_dict()
            result["accuracy"].setdefault(str(patients), {})[name] = task
    for patients in capacity:
        print(f"capacity at {patients:,} patients …", file=sys.stderr)
        source, truth = capacity_cohort(patients, work, seed)
        result["capacity"][str(patients)] = run_task(
            ["linkage", str(source), str(truth)], 1
        ).to_dict()
    for patients in minimal or []:
        print(f"capacity of a minimal export at {patients:,} patients …", file=sys.stderr)
        source, truth = capacity_cohort(patients, work, seed)
        result["minimal"][str(patients)] = run_task(
            ["linkage", str(source), str(truth), "minimal"], 1
        ).to_dict()
    return result


def machine() -> dict[str, Any]:
    import psutil

    return {
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def versions() -> dict[str, str]:
    found = {}
    for lib in LIBRARIES:
        try:
            found[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            found[lib] = "not installed"
    return found


def ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b > 0 else float("nan")


def bench_size(
    size: int,
    work: Path,
    repeat: int,
    seed: int,
    *,
    ingest: bool = True,
    peers: bool = True,
    sites: bool = True,
) -> dict[str, Any]:
    truth = consortium(size, work, seed)
    result: dict[str, Any] = {"event_rows": _event_rows(truth), "tasks": {}, "ratios": {}}
    result["skipped"] = [
        name for name, run in (("ingest", ingest), ("peers", peers), ("sites", sites)) if not run
    ]
    tasks = result["tasks"]
    r = result["ratios"]
    if ingest:
        site = export_site(size, work, seed)
        mapping = REPO / "sample_data" / EXPORT_SITE / "mapping.yaml"
        exports = sorted(str(p) for p in site.glob("*.csv"))
        result["export_csv_rows"] = _csv_rows(site)
        tasks["read_csv"] = run_task(["read-csv", *exports], repeat).to_dict()
        tasks["ingest"] = run_task(["ingest", str(site), str(mapping)], repeat).to_dict()
        ingest_out = work / f"ingest_{size}"
        tasks["ingest_write"] = run_task(
            ["ingest-write", str(site), str(mapping), str(ingest_out)], repeat
        ).to_dict()
        shutil.rmtree(ingest_out, ignore_errors=True)
        r["ingest_vs_read_csv"] = ratio(tasks["ingest"]["median_s"], tasks["read_csv"]["median_s"])
        r["ingest_write_vs_read_csv"] = ratio(
            tasks["ingest_write"]["median_s"], tasks["read_csv"]["median_s"]
        )
    if sites:
        end_to_end(size, work, repeat, seed, result)
    tasks["read_parquet"] = run_task(["read-parquet", str(truth)], repeat).to_dict()
    tasks["validate"] = run_task(["validate", str(truth)], repeat).to_dict()
    r["validate_vs_read_parquet"] = ratio(
        tasks["validate"]["median_s"], tasks["read_parquet"]["median_s"]
    )
    if not peers:
        return result

    assessments = str(truth / "disease_assessments.parquet")
    for engine in PEERS:
        tasks[f"peer_{engine}"] = run_task(["peer", engine, assessments], repeat).to_dict()

    for engine in PEERS[1:]:
        r[f"{engine}_vs_cartreg"] = ratio(
            tasks[f"peer_{engine}"]["median_s"], tasks["peer_cartreg"]["median_s"]
        )
    return result


def end_to_end(size: int, work: Path, repeat: int, seed: int, result: dict[str, Any]) -> None:
    """`cartreg check` of four sites, one per export layout, then the registry merge of all four,
    each beside polars merely reading the same inputs."""
    sites = many_sites(size, work, seed)
    mappings = REPO / "sample_data"
    checked, registry = work / f"checked_{size}", work / f"registry_{size}"
    tasks, r = result["tasks"], result["ratios"]
    tasks["read_exports"] = run_task(["read-exports", str(sites)], repeat).to_dict()
    tasks["check_sites"] = run_task(
        ["check-sites", str(sites), str(mappings), str(checked)], repeat
    ).to_dict()
    r["check_sites_vs_read_exports"] = ratio(
        tasks["check_sites"]["median_s"], tasks["read_exports"]["median_s"]
    )
    folders = [str(checked / site / "tables") for site in SITE_DIRS]
    tasks["read_checked"] = run_task(["read-parquet", *folders], repeat).to_dict()
    tasks["merge_sites"] = run_task(
        ["merge-sites", str(checked), str(mappings), str(registry)], repeat
    ).to_dict()
    r["merge_sites_vs_read_checked"] = ratio(
        tasks["merge_sites"]["median_s"], tasks["read_checked"]["median_s"]
    )
    r["merge_command_vs_read_checked"] = ratio(
        tasks["merge_sites"]["detail"]["merge_command_s"], tasks["read_checked"]["median_s"]
    )
    shutil.rmtree(checked, ignore_errors=True)
    shutil.rmtree(registry, ignore_errors=True)


def _target(text: str, value: float | None, met: bool | None, note: str = "") -> dict[str, Any]:
    row: dict[str, Any] = {"target": text, "value": value, "met": met}
    if note:
        row["note"] = note
    return row


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with its measured value and whether it is met (None: not measured)."""
    sizes = report["sizes"]
    rows = []
    ref_size = "1000000" if "1000000" in sizes else (min(sizes, key=int) if sizes else None)
    note = "" if ref_size == "1000000" else f"measured at {int(ref_size or 0):,} rows, not 1M"
    ratios = sizes[ref_size]["ratios"] if ref_size else {}
    written = ratios.get("ingest_write_vs_read_csv")
    for key, text, limit, at_most in (
        (
            "ingest_vs_read_csv",
            "ingest (read + map + parse) of a 1M-row CSV export <= 4x read_csv",
            4,
            True,
        ),
        ("validate_vs_read_parquet", "validation of 1M event rows <= 10x read_parquet", 10, True),
        ("gx_vs_cartreg", "cartreg >= 20x faster than GX on shared checks", 20, False),
    ):
        value = ratios.get(key)
        met = None if value is None else (value <= limit if at_most else value >= limit)
        extra = note
        if key == "ingest_vs_read_csv" and written is not None:
            # Reported beside the target, never instead of it: the whole command also writes.
            whole = f"whole command, writing Parquet and JSON too: {written}x"
            extra = f"{note}; {whole}" if note else whole
        rows.append(_target(text, value, met, extra))
    if sizes:
        largest = max(sizes, key=int)
        tasks = sizes[largest]["tasks"]
        for name in ("validate", "ingest", "ingest_write"):
            if name in tasks:
                peak = tasks[name]["peak_rss_mb"]
                rows.append(
                    _target(
                        f"{name}: peak memory at {int(largest):,} rows within 8 GiB",
                        round(peak / 1024, 2),
                        peak <= 8 * 1024,
                    )
                )
            else:
                rows.append(
                    _target(
                        f"{name}: peak memory at {int(largest):,} rows within 8 GiB",
                        None,
                        None,
                        "not run at this size (see --ingest-max-size)",
                    )
                )
    rows += linkage_targets(report, sizes)
    if "synth" in report:
        synth = report["synth"]
        rows.append(
            _target(
                f"synthesize {synth['patients']:,} patients in a few minutes (<= 5 min)",
                synth["median_s"],
                synth["median_s"] <= 300 and synth["detail"]["exit_code"] == 0,
            )
        )
    help_s = report["startup"]["median_s"]
    rows.append(_target("cartreg --help under 0.3 s", help_s, help_s < 0.3))
    return rows


def linkage_targets(report: dict[str, Any], sizes: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 17's targets: duplicate pairs found, linkage time, merge speed, capacity warning."""
    rows = []
    linkage = report.get("linkage", {})
    for patients, consortia in linkage.get("accuracy", {}).items():
        for name, task in consortia.items():
            d = task["detail"]
            value = f"precision {d['precision']}, recall {d['recall']}"
            met = (d["precision"] or 0) >= 0.95 and (d["recall"] or 0) >= 0.95
            rows.append(
                _target(
                    f"duplicate pairs at {int(patients):,} patients ({name}): precision and "
                    "recall >= 0.95",
                    value,
                    met,
                    f"p >= {d['threshold']}; "
                    + ", ".join(
                        f"{cls}: {v['precision']}/{v['recall']}"
                        for cls, v in d["by_evidence"].items()
                    ),
                )
            )
    hundred = linkage.get("accuracy", {}).get("100000", {}).get("four_layouts")
    if hundred:
        rows.append(
            _target(
                "linkage of 100,000 patients <= 30 s",
                hundred["median_s"],
                hundred["median_s"] <= 30,
            )
        )
    series = [
        (label, patients, task)
        for key, label in (("capacity", ""), ("minimal", "minimal export "))
        for patients, task in linkage.get(key, {}).items()
    ]
    if series:
        collapsed, warned_there, early, notes = 0, 0, 0, []
        for label, patients, task in series:
            for cls, v in task["detail"]["by_evidence"].items():
                collapse = v["recall"] is not None and v["recall"] < 0.5
                warned = bool(v.get("capacity_warning"))
                collapsed += collapse
                warned_there += collapse and warned
                early += warned and not collapse
                notes.append(
                    f"{label}{int(patients):,} {cls}: recall {v['recall']} (predicted "
                    f"{v.get('predicted_recall')}), warning {'yes' if warned else 'no'}"
                )
        rows.append(
            _target(
                "capacity warning fires at every size where recall collapses (< 0.5)",
                f"{warned_there} of {collapsed} collapses warned, {early} warning(s) before",
                collapsed > 0 and warned_there == collapsed,
                "; ".join(notes),
            )
        )
    if "1000000" in sizes and "merge_sites_vs_read_checked" in sizes["1000000"]["ratios"]:
        value = sizes["1000000"]["ratios"]["merge_sites_vs_read_checked"]
        merge_only = sizes["1000000"]["ratios"].get("merge_command_vs_read_checked")
        rows.append(
            _target(
                "registry init, store of four sites and merge at 1M event rows <= 20x read_checked",
                value,
                value <= 20,
                f"the merge command alone: {merge_only}x",
            )
        )
    return rows


def to_markdown(report: dict[str, Any]) -> str:
    lines = [
        "# cartreg benchmark results",
        "",
        "Machine: {cores} cores, {memory_gib} GiB, Python {python}.".format(**report["machine"]),
        "Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()) + ".",
        "",
        "## Targets",
        "",
        "| target | value | met | note |",
        "|---|---|---|---|",
    ]
    for t in report["targets"]:
        met = "not measured" if t["met"] is None else ("yes" if t["met"] else "**no**")
        lines.append(f"| {t['target']} | {t['value']} | {met} | {t.get('note', '')} |")
    for size, data in report["sizes"].items():
        lines += [
            "",
            f"## {int(size):,} rows (harmonized event rows {data['event_rows']:,}; "
            + (
                f"export CSV rows {data['export_csv_rows']:,})"
                if "export_csv_rows" in data
                else f"not run: {', '.join(data.get('skipped', []))})"
            ),
            "",
            "| task | median s | min s | max s | peak RSS MB |",
            "|---|---|---|---|---|",
        ]
        for name, t in data["tasks"].items():
            lines.append(
                f"| {name} | {t['median_s']} | {t['min_s']} | {t['max_s']} | {t['peak_rss_mb']} |"
            )
        lines += ["", "| ratio | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in data["ratios"].items()]
    lines += linkage_markdown(report.get("linkage", {}))
    s = report["startup"]
    lines += [
        "",
        f"`cartreg --help`: median {s['median_s']} s (min {s['min_s']}, max {s['max_s']}).",
    ]
    if "synth" in report:
        y = report["synth"]
        lines.append(
            f"`cartreg synth` of {y['patients']:,} patients (4 sites): {y['median_s']} s, "
            f"peak RSS {y['peak_rss_mb']} MB."
        )
    return "\n".join(lines) + "\n"


def linkage_markdown(linkage: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    runs = [
        (f"{int(n):,}", name, task)
        for n, consortia in linkage.get("accuracy", {}).items()
        for name, task in consortia.items()
    ]
    runs += [
        (f"{int(n):,}", "four_layouts (truth)", t) for n, t in linkage.get("capacity", {}).items()
    ]
    runs += [
        (f"{int(n):,}", "minimal export (truth)", t) for n, t in linkage.get("minimal", {}).items()
    ]
    if not runs:
        return lines
    lines += [
        "",
        "## Cross-site duplicates (issue 17)",
        "",
        "| patients | consortium | s | peak RSS MB | listed | precision | recall | dated: P / R "
        "| year-only: P / R / predicted R | beyond capacity |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for patients, name, task in runs:
        d = task["detail"]
        by = d["by_evidence"]
        dated = by.get("dated", {})
        year = by.get("year_only", {})
        lines.append(
            f"| {patients} | {name} | {task['median_s']} | {task['peak_rss_mb']} | {d['listed']} "
            f"| {d['precision']} | {d['recall']} "
            f"| {dated.get('precision')} / {dated.get('recall')} "
            f"| {year.get('precision')} / {year.get('recall')} / {year.get('predicted_recall')} "
            f"| {', '.join(d['beyond_capacity']) or 'none'} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100k,1m", help="event-row sizes, e.g. 10k,100k,1m,10m")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=REPO / "results")
    parser.add_argument(
        "--work", type=Path, default=None, help="scratch folder (default: OUT/work)"
    )
    parser.add_argument(
        "--ingest-max-size",
        default="10m",
        help="run the ingest tasks only up to this size",
    )
    parser.add_argument(
        "--sites-max-size",
        default="1m",
        help="run the end-to-end check and registry merge of four sites only up to this size",
    )
    parser.add_argument(
        "--peers-max-size",
        default="2m",
        help="run the peer engines (GX on pandas is slow and memory-hungry) only up to this size",
    )
    parser.add_argument(
        "--synth-patients",
        default="0",
        help="also time `cartreg synth` of this many patients at 4 sites (e.g. 1m; 0 = skip)",
    )
    parser.add_argument(
        "--linkage-sizes",
        default="10k,100k",
        help="patients of the consortia whose cross-site duplicates are linked ('' = skip)",
    )
    parser.add_argument(
        "--minimal-sizes",
        default="",
        help="patients of consortia linked on a minimal export only, where the capacity "
        "warning must fire as recall collapses, e.g. 1k,3k,10k,30k",
    )
    parser.add_argument(
        "--capacity-sizes",
        default="",
        help="patients of the consortia linked from truth tables to find where recall "
        "collapses, e.g. 10k,100k,1m (1M needs about 8 GB)",
    )
    args = parser.parse_args(argv)
    work = args.work or args.out / "work"
    work.mkdir(parents=True, exist_ok=True)
    cartreg = str(Path(sys.executable).parent / "cartreg")
    report: dict[str, Any] = {"machine": machine(), "versions": versions(), "sizes": {}}
    report["startup"] = run_task(["command", cartreg, "--help"], max(args.repeat, 5)).to_dict()
    synth_patients = parse_size(args.synth_patients)
    if synth_patients:
        print(f"synthesizing {synth_patients:,} patients …", file=sys.stderr)
        target = work / "synth_scale"
        command = [cartreg, "synth", "--patients", str(synth_patients), "--sites", "4"]
        command += ["--layouts", "redcap,ehr,deid", "--seed", str(args.seed), "--out", str(target)]
        report["synth"] = {
            "patients": synth_patients,
            **run_task(["command", *command], 1).to_dict(),
        }
        shutil.rmtree(target, ignore_errors=True)
    for text in args.sizes.split(","):
        size = parse_size(text)
        print(f"benchmarking {size:,} event rows …", file=sys.stderr)
        report["sizes"][str(size)] = bench_size(
            size,
            work,
            args.repeat,
            args.seed,
            ingest=size <= parse_size(args.ingest_max_size),
            peers=size <= parse_size(args.peers_max_size),
            sites=size <= parse_size(args.sites_max_size),
        )
    linkage_sizes = [parse_size(t) for t in args.linkage_sizes.split(",") if t.strip()]
    capacity_sizes = [parse_size(t) for t in args.capacity_sizes.split(",") if t.strip()]
    minimal_sizes = [parse_size(t) for t in args.minimal_sizes.split(",") if t.strip()]
    if linkage_sizes or capacity_sizes or minimal_sizes:
        report["linkage"] = bench_linkage(
            linkage_sizes, capacity_sizes, work, args.seed, minimal_sizes
        )
    report["targets"] = targets(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmarks.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (args.out / "benchmarks.md").write_text(to_markdown(report), encoding="utf-8")
    print(to_markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
