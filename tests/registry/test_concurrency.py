"""A submit killed at any point leaves the registry as it was; concurrent submits serialize.

The submits run in real subprocesses; ``CARTREG_TEST_PAUSE_AT`` makes one sleep at a named
stage (announced through ``CARTREG_TEST_PAUSE_FILE``) so that the test can SIGKILL it there.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cartreg.registry import init_registry, open_registry, registry_status, submit_output
from tests.registry.helpers import MakeOutput, combine, patient, snapshot

SITE = "SITE_A"
DRIVER = (
    "import sys\n"
    "from cartreg.registry import submit_output\n"
    "r = submit_output(sys.argv[1], sys.argv[2], site=sys.argv[3], mapping_path=sys.argv[4])\n"
    "print(r.status, r.version)\n"
)


def start_submit(
    registry: Path,
    out: Path,
    mapping: Path,
    *,
    pause_at: str | None = None,
    marker: Path | None = None,
    pause_seconds: float = 60,
) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARTREG_TEST_")}
    if pause_at is not None:
        env["CARTREG_TEST_PAUSE_AT"] = pause_at
        env["CARTREG_TEST_PAUSE_SECONDS"] = str(pause_seconds)
        if marker is not None:
            env["CARTREG_TEST_PAUSE_FILE"] = str(marker)
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(registry), str(out), SITE, str(mapping)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(marker: Path, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"submit ended before pausing: {proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("submit never reached its pause point")
        time.sleep(0.05)


@pytest.fixture
def seeded(tmp_path: Path, make_output: MakeOutput, mapping_file: Path) -> Path:
    registry = tmp_path / "registry.duckdb"
    init_registry(registry)
    submit_output(
        registry, make_output(SITE, patient(SITE, "1")), site=SITE, mapping_path=mapping_file
    )
    return registry


@pytest.mark.slow
@pytest.mark.parametrize(
    "stage", ["locked", "begin", "findings", "table:disease_assessments", "before_commit"]
)
def test_killed_submit_leaves_registry_unchanged(
    stage: str, seeded: Path, make_output: MakeOutput, mapping_file: Path, tmp_path: Path
) -> None:
    before = snapshot(seeded)
    out = make_output(
        SITE,
        combine(patient(SITE, "1"), patient(SITE, "2", assessments=3)),
        findings=[
            {
                "rule_id": "CV-001",
                "severity": "warning",
                "category": "conformance",
                "message": "m",
                "site_id": SITE,
            }
        ],
    )
    marker = tmp_path / "paused"
    proc = start_submit(seeded, out, mapping_file, pause_at=stage, marker=marker)
    wait_for(marker, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert snapshot(seeded) == before  # readable, and exactly as before
    # The lock died with the process: the same submit now goes through.
    again = submit_output(seeded, out, site=SITE, mapping_path=mapping_file, lock_timeout=5)
    assert (again.status, again.version) == ("accepted", 2)
    # The killed submit would have opened this query (the snapshot above covers the query tables).
    assert again.query_changes["opened"] == 1


def test_submit_killed_after_commit_keeps_the_new_version(
    seeded: Path, make_output: MakeOutput, mapping_file: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "paused"
    out = make_output(SITE, combine(patient(SITE, "1"), patient(SITE, "2")))
    proc = start_submit(seeded, out, mapping_file, pause_at="committed", marker=marker)
    wait_for(marker, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    with open_registry(seeded) as reg:
        assert registry_status(reg)["patients"].to_list() == [1, 2]


def test_concurrent_submits_serialize(
    seeded: Path, make_output: MakeOutput, mapping_file: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "paused"
    slow = start_submit(
        seeded,
        make_output(SITE, combine(patient(SITE, "1"), patient(SITE, "2"))),
        mapping_file,
        pause_at="begin",
        marker=marker,
        pause_seconds=1.5,
    )
    wait_for(marker, slow)
    everyone = combine(*(patient(SITE, k) for k in "123"))
    fast = start_submit(seeded, make_output(SITE, everyone), mapping_file)
    out_slow, err_slow = slow.communicate(timeout=60)
    out_fast, err_fast = fast.communicate(timeout=60)
    assert slow.returncode == 0 and fast.returncode == 0, (err_slow, err_fast)
    assert out_slow.split() == ["accepted", "2"]
    assert out_fast.split() == ["accepted", "3"]
    with open_registry(seeded) as reg:
        status = registry_status(reg)
        assert status["version"].to_list() == [1, 2, 3]
        assert status["patients"].to_list() == [1, 2, 3]
        assert reg.scalar("SELECT count(*) FROM cdm_patients") == 6


def test_second_submit_fails_clearly_when_lock_wait_runs_out(
    seeded: Path, make_output: MakeOutput, mapping_file: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "paused"
    holder = start_submit(
        seeded,
        make_output(SITE, patient(SITE, "2")),
        mapping_file,
        pause_at="begin",
        marker=marker,
        pause_seconds=60,
    )
    try:
        wait_for(marker, holder)
        cli = subprocess.run(
            [
                sys.executable,
                "-m",
                "cartreg",
                "registry",
                "store",
                str(make_output(SITE, patient(SITE, "3"))),
                "--site",
                SITE,
                "--mapping",
                str(mapping_file),
                "--registry",
                str(seeded),
                "--lock-timeout",
                "0.5",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        holder.kill()
        holder.wait()
    assert cli.returncode == 2
    assert "in use by another cartreg process" in cli.stderr
    assert "Traceback" not in cli.stderr
    assert len(cli.stderr.strip().splitlines()) == 1
