"""The benchmark harness runs end to end at a small size (a smoke test: no timing asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cartreg.paths import repo_root


def test_harness_runs_at_10k_and_reports_every_task_and_target(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(repo_root())}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--sizes",
            "10k",
            "--repeat",
            "1",
            "--out",
            str(tmp_path),
            "--linkage-sizes",
            "1k",
            "--capacity-sizes",
            "1k",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=repo_root(),
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "benchmarks.json").read_text())
    size = report["sizes"]["10000"]
    expected = {"read_csv", "ingest", "ingest_write", "read_parquet", "validate"}
    expected |= {"read_exports", "check_sites", "read_checked", "merge_sites"}
    expected |= {f"peer_{e}" for e in ("cartreg", "pandera", "dataframely", "pointblank", "gx")}
    assert set(size["tasks"]) == expected
    assert size["tasks"]["merge_sites"]["detail"]["merge_command_s"] > 0
    for task in size["tasks"].values():
        assert task["median_s"] > 0 and task["peak_rss_mb"] > 0
    # every engine found the same defects in the same data, so the comparison is like for like
    engines = ("cartreg", "pandera", "dataframely", "pointblank", "gx")
    failing = {e: size["tasks"][f"peer_{e}"]["detail"]["failing"] for e in engines}
    assert len(set(failing.values())) == 1 and failing["gx"] > 0, failing
    assert 9_000 <= size["event_rows"] <= 11_000
    # the end-to-end tasks ran every site and merged them
    assert size["tasks"]["check_sites"]["detail"]["sites"] == 4
    assert size["tasks"]["merge_sites"]["detail"]["merged_rows"] > 0
    # the in-memory ingest and the whole command harmonize the same rows
    ingests = [size["tasks"][t]["detail"] for t in ("ingest", "ingest_write")]
    assert ingests[0] == ingests[1] and ingests[0]["rows_out"] > 0
    assert {t["target"].split(" ")[0] for t in report["targets"]} >= {
        "ingest",
        "validation",
        "cartreg",
    }
    # the duplicate pairs were linked, scored against the truth, and the capacity estimated
    linkage = report["linkage"]
    for task in [*linkage["accuracy"]["1000"].values(), linkage["capacity"]["1000"]]:
        detail = task["detail"]
        assert detail["true_pairs"] == 50 and detail["listed"] > 0
        assert 0 < detail["precision"] <= 1 and 0 < detail["recall"] <= 1
    targets = {t["target"] for t in report["targets"]}
    assert any(t.startswith("duplicate pairs at 1,000 patients (four_layouts)") for t in targets)
    assert any(t.startswith("capacity warning fires at every size") for t in targets)
    markdown = (tmp_path / "benchmarks.md").read_text()
    assert markdown.startswith("# cartreg benchmark results")
    assert "## Cross-site duplicates (issue 17)" in markdown
    assert report["versions"]["polars"] and report["machine"]["cores"]
