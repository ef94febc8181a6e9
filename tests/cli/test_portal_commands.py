"""``cartreg users``, ``cartreg sites``: accounts and site mappings of the portal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cartreg.cli.main import cli
from cartreg.errors import CartregError
from cartreg.paths import repo_root
from cartreg.registry.store import init_registry, open_registry

SAMPLE = repo_root() / "sample_data"
PASSWORD = "correct horse battery staple"


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    path = tmp_path / "registry.duckdb"
    init_registry(path)
    return path


def run(registry: Path, *args: str, input: str | None = None) -> tuple[int, str]:
    """Exit code and output as ``cartreg`` gives them (a CartregError is exit 2, one line)."""
    result = CliRunner().invoke(cli, [*args, "--registry", str(registry)], input=input)
    if isinstance(result.exception, CartregError):
        return 2, f"{result.output}error: {result.exception.one_line()}"
    return result.exit_code, result.output


def test_users_add_list_disable(registry: Path, tmp_path: Path) -> None:
    secret = tmp_path / "pw.txt"
    secret.write_text(PASSWORD + "\n")
    code, out = run(
        registry,
        "users",
        "add",
        "alice",
        "--role",
        "site",
        "--site",
        "redcap_a",
        "--password-file",
        str(secret),
    )
    assert code == 0, out
    assert "added alice (site user of REDCAP_A)" in out
    assert "has no mapping yet" in out
    code, out = run(
        registry,
        "users",
        "add",
        "carol",
        "--role",
        "coordinator",
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert code == 0, out
    code, out = run(registry, "users", "list", "--json")
    users = json.loads(out)
    assert [(u["user"], u["role"], u["site_id"], u["active"]) for u in users] == [
        ("carol", "coordinator", None, True),
        ("alice", "site", "REDCAP_A", True),
    ]
    assert "argon2" not in out and PASSWORD not in out
    code, out = run(registry, "users", "disable", "alice")
    assert code == 0 and "disabled alice" in out
    assert "disabled" in run(registry, "users", "list")[1]
    with open_registry(registry) as reg:
        hashes = [
            r[0] for r in reg.conn.execute("SELECT password_hash FROM portal_users").fetchall()
        ]
    assert all(h.startswith("$argon2id$") and PASSWORD not in h for h in hashes)
    assert PASSWORD.encode() not in registry.read_bytes()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "site"], "a site user needs --site"),
        (["--role", "coordinator", "--site", "REDCAP_A"], "give --site only for site users"),
        (["--role", "site", "--site", "bad site!"], "site id 'BAD SITE!' is not allowed"),
    ],
)
def test_users_add_refuses_bad_options_with_one_line(
    registry: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    secret = tmp_path / "pw.txt"
    secret.write_text(PASSWORD)
    code, out = run(registry, "users", "add", "x1", *args, "--password-file", str(secret))
    assert code == 2
    assert message in out


def test_weak_passwords_and_reused_names_are_refused(registry: Path, tmp_path: Path) -> None:
    short = tmp_path / "short.txt"
    short.write_text("hunter2")
    code, out = run(
        registry, "users", "add", "eve", "--role", "statistician", "--password-file", str(short)
    )
    assert code == 2 and "password too short" in out
    same = tmp_path / "same.txt"
    same.write_text("statistician-eve")
    code, out = run(
        registry,
        "users",
        "add",
        "statistician-eve",
        "--role",
        "statistician",
        "--password-file",
        str(same),
    )
    assert code == 2 and "password equals the user name" in out
    good = tmp_path / "good.txt"
    good.write_text(PASSWORD)
    assert (
        run(
            registry, "users", "add", "eve", "--role", "statistician", "--password-file", str(good)
        )[0]
        == 0
    )
    code, out = run(
        registry, "users", "add", "eve", "--role", "statistician", "--password-file", str(good)
    )
    assert code == 2 and "user eve exists" in out


def test_sites_add_checks_the_mapping_and_its_site(registry: Path) -> None:
    mapping = SAMPLE / "redcap_a" / "mapping.yaml"
    code, out = run(registry, "sites", "add", "EHR_C", "--mapping", str(mapping))
    assert code == 2 and "the mapping is for site REDCAP_A, not EHR_C" in out
    code, out = run(registry, "sites", "add", "REDCAP_A", "--mapping", str(mapping))
    assert code == 0, out
    assert "records.csv" in out and "data_dictionary.csv" in out
    assert "REDCAP_A" in run(registry, "sites", "list")[1]
