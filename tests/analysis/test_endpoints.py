"""Endpoint declarations: the bundled files load; broken files give one-line ConfigErrors."""

from __future__ import annotations

from pathlib import Path

import pytest

from cartreg.analysis.endpoints import DEFAULT_PARAMETERS, load_endpoint, load_endpoints
from cartreg.errors import ConfigError


def test_bundled_endpoints_load() -> None:
    endpoints = load_endpoints()
    assert set(endpoints) == {
        "OS",
        "EFS",
        "EFS_HCTC",
        "TTP",
        "TTP_HCTC",
        "TTP_DESC",
        "REMDUR",
        "PPS",
        "SALV_CR",
        "CIR",
        "CIR_CR",
    }
    ttp = endpoints["TTP"]
    assert [s.source for s in ttp.competing] == ["death"]
    assert ttp.param("burden_threshold_pct") == 5.0
    assert ttp.param("emd_counts_high") is True
    assert ttp.param("censor_at_hct") is False
    assert ttp.param("nonresponse_event_date") == "ASSESSMENT"
    assert endpoints["SALV_CR"].kind == "proportion"
    # progression-type endpoints are censored at the last day known progression-free
    for code in ("EFS", "TTP", "REMDUR", "CIR", "CIR_CR"):
        assert [s.source for s in endpoints[code].censors] == ["last_progression_free"], code
    assert endpoints["EFS_HCTC"].param("censor_at_hct") is True
    assert [s.source for s in endpoints["CIR_CR"].competing] == ["death"]
    assert all(ep.description for ep in endpoints.values())


GOOD = """\
paramcd: X
name: Example
kind: time_to_event
population: all_infused
origin: index_infusion
events: [{source: death, description: Death}]
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD + "colour: red\n", "unknown key 'colour'"),
        (GOOD.replace("all_infused", "all_infusd"), "did you mean 'all_infused'"),
        (GOOD.replace("source: death", "source: deth"), "events[0]: unknown source 'deth'"),
        (
            GOOD + "parameters: {censor_at_hct: maybe}\n",
            "parameters.censor_at_hct: must be true or false",
        ),
        (GOOD + "parameters: {nonresponse_event_date: LATER}\n", "one of ASSESSMENT, INDEX"),
        (GOOD + "parameters: {burden_threshhold_pct: 5}\n", "did you mean 'burden_threshold_pct'"),
        (GOOD.replace("kind: time_to_event", "kind: rate"), "invalid kind 'rate'"),
        (GOOD + "landmarks_months: [-1]\n", "landmarks_months: must be a list of positive numbers"),
        (
            GOOD.replace("events: [{source: death, description: Death}]", "events: []"),
            "at least one event",
        ),
    ],
)
def test_broken_endpoint_files_give_one_line_errors(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "X.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_endpoint(path)
    message = info.value.one_line()
    assert expected in message
    assert "\n" not in message
    assert str(path) in message


def test_duplicate_paramcd_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD, encoding="utf-8")
    (tmp_path / "b.yaml").write_text(GOOD, encoding="utf-8")
    with pytest.raises(ConfigError, match="paramcd 'X' also declared"):
        load_endpoints(tmp_path)


def test_with_parameters_overrides_and_checks_names() -> None:
    ttp = load_endpoints()["TTP"]
    assert ttp.with_parameters(censor_at_hct=True).param("censor_at_hct") is True
    assert ttp.param("censor_at_hct") is False
    with pytest.raises(ConfigError, match="unknown parameter"):
        ttp.with_parameters(censor_at_htc=True)
    assert set(DEFAULT_PARAMETERS) >= set(ttp.parameters)
