from __future__ import annotations

import pytest

from cartreg.cdm import CDM, load_cdm
from cartreg.rules import Rule, load_rules


@pytest.fixture(scope="session")
def cdm() -> CDM:
    return load_cdm()


@pytest.fixture(scope="session")
def catalog(cdm: CDM) -> tuple[Rule, ...]:
    return load_rules(cdm=cdm)
