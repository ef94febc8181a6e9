from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cartreg.errors import ConfigError
from cartreg.registry.pseudonym import load_secret, pseudonym, pseudonymize_tables

SECRET = b"0123456789abcdef-consortium"
local_ids = st.text(alphabet="abcdefXYZ0123456789_.-", min_size=1, max_size=12)


def test_secret_from_file_or_environment(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("file-secret-0123456789\n", encoding="utf-8")
    env = {"CARTREG_SECRET": "env-secret-0123456789"}
    assert load_secret(path, environ=env) == b"file-secret-0123456789"
    assert load_secret(environ=env) == b"env-secret-0123456789"
    assert load_secret(environ={}) is None
    with pytest.raises(ConfigError, match="too short"):
        load_secret(environ={"CARTREG_SECRET": "short"})
    with pytest.raises(ConfigError, match="secret file not found"):
        load_secret(tmp_path / "missing")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "secret is empty"),
        (b" \n\t\n", "secret is empty"),
        (bytes(range(256)), "binary, not text"),
        (b"\x00" * 32, "control characters"),
        (b"first-line-0123456789\nsecond-line-0123456789", "line breaks"),
        (b"x" * 5000, "larger than 4096 bytes"),
    ],
)
def test_an_unusable_secret_file_is_a_clear_config_error(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "secret"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as caught:
        load_secret(path)
    assert "\n" not in str(caught.value)


def test_a_secret_file_that_is_a_folder_or_device_is_refused(tmp_path: Path) -> None:
    for path in (tmp_path, Path("/dev/zero")):
        with pytest.raises(ConfigError, match="not a regular file"):
            load_secret(path)


@given(local_ids, local_ids)
def test_pseudonyms_are_stable_distinct_and_keyed(a: str, b: str) -> None:
    pa = pseudonym(SECRET, f"SITE_A-{a}")
    assert pa == pseudonym(SECRET, f"SITE_A-{a}")
    assert pa.startswith("PSN-") and len(pa) == 28
    assert pa != pseudonym(b"another-secret-value-123", f"SITE_A-{a}")
    if a != b:
        assert pa != pseudonym(SECRET, f"SITE_A-{b}")


@given(st.lists(local_ids, min_size=1, max_size=6, unique=True))
def test_row_ids_follow_their_patient_key(ids: list[str]) -> None:
    keys = [f"SITE_A-{i}" for i in ids]
    tables = {
        "patients": pl.DataFrame({"patient_key": keys, "site_id": ["SITE_A"] * len(keys)}),
        "disease_assessments": pl.DataFrame(
            {
                "assessment_id": [f"{k}-A1" for k in keys],
                "patient_key": keys,
                "related_infusion_id": [f"{k}-INF1" for k in keys],
                "trial_id": ["NCT01234567"] * len(keys),
            }
        ),
    }
    out, mapping = pseudonymize_tables(tables, SECRET)
    assessments = out["disease_assessments"]
    assert assessments.height == len(keys)
    expected = [pseudonym(SECRET, k) for k in keys]
    assert assessments["patient_key"].to_list() == expected
    assert assessments["assessment_id"].to_list() == [f"{p}-A1" for p in expected]
    assert assessments["related_infusion_id"].to_list() == [f"{p}-INF1" for p in expected]
    assert assessments["trial_id"].to_list() == ["NCT01234567"] * len(keys)
    assert out["patients"]["site_id"].to_list() == ["SITE_A"] * len(keys)
    assert mapping.height == len(keys)
