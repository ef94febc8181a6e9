"""Run an R reference script (``tests/analysis/r/*.R``) once and read the JSON it prints.

R is a test requirement, not optional: ``make test`` installs ``r-base-core``,
``r-cran-survival`` and ``r-cran-cmprsk`` from Debian. Without ``Rscript`` these tests fail
with a message saying so; they are never skipped.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

R_DIR = Path(__file__).parent / "r"


def run_r(script: str, *args: Path | str, timeout: float = 600) -> Any:
    """``Rscript r/<script> args...``; its standard output parsed as JSON."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        pytest.fail(
            "Rscript not found: install r-base-core, r-cran-survival and r-cran-cmprsk "
            "(`make test` does this as root on Debian)"
        )
    proc = subprocess.run(
        [rscript, "--vanilla", str(R_DIR / script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"R script {script} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def close(got: Any, want: Any, tol: float = 1e-6) -> bool:
    """Equal within ``tol`` (absolute); None/NaN equal only to None/NaN."""
    if got is None or want is None:
        return got is None and want is None
    return abs(float(got) - float(want)) <= tol
