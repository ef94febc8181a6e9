"""`registry backup` makes a verified, consistent copy; `registry restore` puts one back."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner

from cartreg.cli.main import cli
from cartreg.registry import open_registry, submit_output
from cartreg.registry.backup import backup_registry, restore_registry, verify_registry
from cartreg.registry.store import RegistryCorruptError, RegistryError
from tests.registry.helpers import MakeOutput, combine, damage, data_blocks, patient, snapshot
from tests.registry.test_concurrency import SITE, start_submit, wait_for


def test_backup_is_a_verified_copy_with_the_same_content(stored: Path, tmp_path: Path) -> None:
    target = tmp_path / "backups" / "2025-06-30.duckdb"
    target.parent.mkdir()
    result = backup_registry(stored, target)
    assert result.path == target and target.is_file()
    assert result.rows["cdm_patients"] == 2 and result.rows["submissions"] == 1
    assert snapshot(target) == snapshot(stored)
    assert verify_registry(target) == result.rows
    with open_registry(target) as copy:  # constraints came along
        indexes = copy.scalar(
            "SELECT count(*) FROM duckdb_constraints() WHERE table_name = ?", ["submissions"]
        )
    assert indexes >= 2
    assert [p.name for p in target.parent.iterdir() if "tmp" in p.name] == []


def test_backup_holds_a_commit_still_in_the_write_ahead_log(
    stored: Path, make_output: MakeOutput, mapping_file: Path, tmp_path: Path
) -> None:
    """A writer killed after COMMIT leaves its transaction in `<registry>.wal` only."""
    marker = tmp_path / "paused"
    out = make_output(SITE, combine(*(patient(SITE, k) for k in "123")))
    proc = start_submit(stored, out, mapping_file, pause_at="committed", marker=marker)
    wait_for(marker, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert Path(f"{stored}.wal").is_file()
    target = tmp_path / "b.duckdb"
    result = backup_registry(stored, target)
    assert result.rows["submissions"] == 2 and result.rows["cdm_patients"] == 5
    assert not Path(f"{target}.wal").exists()


def test_backup_refuses_an_existing_target_and_a_corrupt_registry(
    stored: Path, tmp_path: Path
) -> None:
    existing = tmp_path / "b.duckdb"
    existing.write_bytes(b"keep me")
    with pytest.raises(RegistryError, match="backup file exists"):
        backup_registry(stored, existing)
    assert existing.read_bytes() == b"keep me"
    damage(stored, next(o for o, t in data_blocks(stored).items() if "cdm_patients" in t))
    with pytest.raises(RegistryCorruptError):
        backup_registry(stored, tmp_path / "c.duckdb")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith((".c", "c"))) == []


def test_restore_replaces_a_corrupt_registry_and_keeps_it_aside(
    stored: Path, tmp_path: Path, make_output: MakeOutput, mapping_file: Path
) -> None:
    backup = tmp_path / "b.duckdb"
    backup_registry(stored, backup)
    expected = snapshot(backup)
    damage(stored, next(o for o, t in data_blocks(stored).items() if "cdm_patients" in t))
    damaged = stored.read_bytes()
    Path(f"{stored}.wal").write_bytes(b"a write-ahead log of the damaged file")
    result = restore_registry(backup, stored)
    assert snapshot(stored) == expected
    assert result.replaced is not None and result.replaced.read_bytes() == damaged
    assert Path(f"{result.replaced}.wal").is_file() and not Path(f"{stored}.wal").exists()
    # The restored registry takes the next submit.
    out = make_output(SITE, combine(*(patient(SITE, k) for k in "123")))
    assert submit_output(stored, out, site=SITE, mapping_path=mapping_file).version == 2


def test_restore_refuses_a_corrupt_backup_and_leaves_the_registry(
    stored: Path, tmp_path: Path
) -> None:
    backup = tmp_path / "b.duckdb"
    backup_registry(stored, backup)
    damage(backup, next(o for o, t in data_blocks(backup).items() if "submissions" in t))
    before = stored.read_bytes()
    with pytest.raises(RegistryCorruptError):
        restore_registry(backup, stored)
    assert stored.read_bytes() == before
    assert [
        p.name for p in tmp_path.iterdir() if ".replaced-" in p.name or ".restoring-" in p.name
    ] == []


def test_backup_restore_and_verify_commands(stored: Path, tmp_path: Path) -> None:
    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, list(args))
        return result.exit_code, result.output

    registry = ("--registry", str(stored))
    code, out = run("registry", "backup", str(tmp_path / "b.duckdb"), *registry)
    assert code == 0 and "verified" in out and "sha256" in out, out
    code, out = run("registry", "verify", *registry)
    assert code == 0 and "all readable" in out
    code, out = run("registry", "restore", str(tmp_path / "b.duckdb"), *registry)
    assert code == 0 and "restored" in out and ".replaced-" in out.replace("\n", ""), out
