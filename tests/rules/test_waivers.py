"""The waiver file: what is refused, and how (one ConfigError naming the file and the key)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cartreg.errors import ConfigError
from cartreg.rules.waivers import load_waivers


@pytest.mark.parametrize("expires", ["2030-01-01 10:00:00", "2030-01-01T10:00:00Z"])
def test_an_expiry_written_as_date_and_time_is_a_configuration_error(
    tmp_path: Path, expires: str
) -> None:
    # YAML reads these as timestamps: a datetime is a date to isinstance, but comparing it with
    # the date of the run raised TypeError (an internal error, exit 3).
    path = tmp_path / "waivers.yaml"
    path.write_text(
        f"waivers:\n  - {{finding_id: 3c2035aa182026ac, justification: ok, expires: {expires}}}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"waivers\[0\]\.expires: 'expires' must be a date"):
        load_waivers(path)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (
            [
                "  - {finding_id: 3c2035aa182026ac, justification: ok, expires: 2030-01-01}",
                "  - {finding_id: 3c2035aa182026ac, justification: ok, expires: 2020-01-01}",
            ],
            r"waivers\[1\]: finding 3c2035aa182026ac is waived twice \(the first is waivers\[0\]\)",
        ),
        (
            [
                "  - {finding_id: 3c2035aa182026ac, justification: ok, expires: 2030-01-01,"
                " approved_by: [a, b]}"
            ],
            r"waivers\[0\]\.approved_by: 'approved_by' must be text",
        ),
    ],
)
def test_waivers_that_would_be_read_wrongly_are_configuration_errors(
    tmp_path: Path, lines: list[str], message: str
) -> None:
    # second adversarial audit: the later expiry or the list's text was taken without a word
    path = tmp_path / "waivers.yaml"
    path.write_text("waivers:\n" + "\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_waivers(path)
