"""`cartreg check` shows the progress of validation on a terminal, and nothing of it in pipes."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

from cartreg.paths import repo_root

SITE = repo_root() / "sample_data" / "redcap_a"


def _check_args(tmp_path: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cartreg",
        "check",
        str(SITE),
        "--mapping",
        str(SITE / "mapping.yaml"),
        "--out",
        str(tmp_path / "out"),
        "--format",
        "json",
        "--report",
        str(tmp_path / "report.json"),
    ]


def _stderr_on_a_terminal(args: list[str]) -> tuple[int, str]:
    """Run with standard error on a pseudo-terminal, as a user at a shell sees it."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=slave,
        env={**os.environ, "COLUMNS": "120", "TERM": "xterm"},
    )
    os.close(slave)
    chunks: list[bytes] = []
    while True:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # the child closed its end
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    code = proc.wait(timeout=120)
    text = b"".join(chunks).decode("utf-8", errors="replace")
    return code, re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)  # without colours and cursor moves


def test_check_shows_tables_and_rules_done_on_a_terminal(tmp_path: Path) -> None:
    code, text = _stderr_on_a_terminal(_check_args(tmp_path))
    assert code == 1, text  # the sample site has error findings
    tables = [int(n) for n in re.findall(r"schema checks \(tables\)\s+\S*\s*(\d+)/7", text)]
    rules = re.findall(r"data-quality rules\s+\S*\s*(\d+)/(\d+)", text)
    assert tables and tables[-1] == 7, text
    assert rules and rules[-1][0] == rules[-1][1], text  # the last state: all rules done


def test_check_prints_no_progress_into_a_pipe(tmp_path: Path) -> None:
    proc = subprocess.run(_check_args(tmp_path), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "data-quality rules" not in proc.stderr and "schema checks" not in proc.stderr
    assert "\x1b" not in proc.stderr
    assert "wrote" in proc.stderr  # the summary lines are still there
