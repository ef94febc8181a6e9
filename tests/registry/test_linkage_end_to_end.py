"""Simulated consortium with planted duplicates -> submit -> merge: the truth's keys come back."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from click.testing import CliRunner

from cartreg.cli.main import cli
from cartreg.paths import repo_root

SITES = ("redcap_a", "excel_b", "ehr_c", "deid_d")


def run(*args: str, env: dict[str, str] | None = None) -> str:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert result.exit_code in (0, 1), result.output
    return result.output


def test_a_merge_without_pseudonyms_lists_the_planted_pairs_by_their_cdm_keys(
    tmp_path: Path,
) -> None:
    synth = tmp_path / "synth"
    run(
        "synth",
        "--patients",
        "300",
        "--seed",
        "5",
        "--out",
        str(synth),
        "--clean",
        "--duplicate-rate",
        "0.1",
    )
    registry = tmp_path / "registry.duckdb"
    run("registry", "init", str(registry))
    for site in SITES:
        run(
            "registry",
            "submit",
            str(synth / "sites" / site),
            "--site",
            site.upper(),
            "--mapping",
            str(repo_root() / "sample_data" / site / "mapping.yaml"),
            "--registry",
            str(registry),
            "--fail-on",
            "never",
        )
    out = tmp_path / "merged"
    secret = {"CARTREG_SECRET": "a consortium secret that must not be used here"}
    run(
        "registry",
        "merge",
        "--registry",
        str(registry),
        "--out",
        str(out),
        "--no-pseudonyms",
        env=secret,
    )
    listed = pl.read_csv(out / "duplicates.csv")
    truth = pl.read_csv(synth / "truth" / "duplicates.csv")
    assert truth.height == 30

    def pairs(frame: pl.DataFrame, a: str, b: str) -> set[tuple[str, str]]:
        return {(min(x, y), max(x, y)) for x, y in frame.select(a, b).iter_rows()}

    found = pairs(listed, "key_a", "key_b")
    planted = pairs(truth, "patient_key_a", "patient_key_b")
    assert len(found & planted) >= 0.9 * len(planted)  # recall
    assert len(found & planted) >= 0.9 * len(found)  # precision
    patients = pl.read_parquet(out / "tables" / "patients.parquet")
    assert set(listed["key_a"]) | set(listed["key_b"]) <= set(patients["patient_key"])
