"""``cartreg synth`` through click and on real files."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from click.testing import CliRunner

from cartreg.cli.main import cli


def test_summary_prints_pass_for_the_committed_seed() -> None:
    result = CliRunner().invoke(cli, ["synth", "--summary"])
    assert result.exit_code == 0, result.output
    assert "FAIL" not in result.output
    assert "median survival after progression" in result.output


def test_out_writes_truth_sites_and_answer_key(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["synth", "--patients", "150", "--sites", "5", "--seed", "4", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    patients = pl.read_parquet(tmp_path / "truth" / "patients.parquet")
    assert patients.height == 150
    assert sorted(p.name for p in (tmp_path / "sites").iterdir()) == [
        "deid_d",
        "ehr_c",
        "excel_b",
        "redcap_a",
        "redcap_e",
    ]
    assert (tmp_path / "sites" / "redcap_e" / "records.csv").is_file()
    key = pl.read_csv(tmp_path / "defects.csv")
    assert key.height > 0 and set(key["site_id"]) <= set(patients["site_id"])
    # Patients reported twice are counted as such, not left to look like lost or extra rows.
    twice = pl.read_csv(tmp_path / "truth" / "duplicates.csv").height
    assert twice > 0
    assert f"wrote 150 patients at 5 sites to {tmp_path}, {twice} of them reported by a" in (
        " ".join(result.output.split())
    )


def test_clean_run_writes_no_answer_key(tmp_path: Path) -> None:
    args = [
        "synth",
        "--patients",
        "60",
        "--sites",
        "2",
        "--clean",
        "--layouts",
        "ehr,deid",
        "--out",
        str(tmp_path),
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "defects.csv").exists()
    assert sorted(p.name for p in (tmp_path / "sites").iterdir()) == ["deid_b", "ehr_a"]


def test_bad_layout_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["synth", "--layouts", "sas", "--out", str(tmp_path)])
    assert result.exit_code == 2


def test_subprocess_run_and_one_line_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "cartreg",
            "synth",
            "--patients",
            "40",
            "--sites",
            "2",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "sites" / "excel_b" / "CAR-T_Register_Export.xlsx").is_file()
    too_big = subprocess.run(
        [
            sys.executable,
            "-m",
            "cartreg",
            "synth",
            "--patients",
            "2000000",
            "--out",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert too_big.returncode == 2
    assert "Excel" in too_big.stderr and "Traceback" not in too_big.stderr
    assert len(too_big.stderr.strip().splitlines()) == 1


def test_duplicate_rate_writes_the_truth_pairs(tmp_path: Path) -> None:
    args = ["synth", "--patients", "200", "--sites", "4", "--seed", "4", "--out", str(tmp_path)]
    result = CliRunner().invoke(cli, [*args, "--duplicate-rate", "0.05", "--truth-only"])
    assert result.exit_code == 0, result.output
    truth = pl.read_csv(tmp_path / "truth" / "duplicates.csv")
    assert truth.columns == ["patient_key_a", "patient_key_b"] and truth.height == 10
    patients = pl.read_parquet(tmp_path / "truth" / "patients.parquet")
    assert set(truth["patient_key_b"]) <= set(patients["patient_key"])
    one_site = CliRunner().invoke(
        cli, ["synth", "--patients", "20", "--sites", "1", "--duplicate-rate", "0.1", "--summary"]
    )
    from cartreg.errors import InputError

    assert isinstance(one_site.exception, InputError)  # `cartreg` prints it, exit code 2
    assert "at least two sites" in str(one_site.exception)
