"""Link decisions that contradict each other are errors; links that cannot apply are warnings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from cartreg.errors import ConfigError
from cartreg.registry import merge_registry
from cartreg.registry.duplicates import LINK_COLUMNS
from cartreg.registry.links import LINK_IGNORED, check_links
from cartreg.registry.pseudonym import pseudonym
from tests.registry.test_merge import SECRET, registry  # noqa: F401  (the merge fixture)

KEYS = ["S1-A", "S2-B", "S3-C", "S4-D", "S1-E"]
PATIENTS = pl.DataFrame({"patient_key": KEYS, "site_id": [k.split("-")[0] for k in KEYS]})


def links(*rows: tuple[str, str, str, str | None]) -> pl.DataFrame:
    return pl.DataFrame(
        [dict(zip(("key_a", "key_b", "decision", "keep"), r, strict=True)) for r in rows],
        schema={c: pl.String for c in LINK_COLUMNS},
    )


def check(
    frame: pl.DataFrame, aliases: pl.DataFrame | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    return check_links(
        frame,
        patients=PATIENTS,
        aliases=aliases,
        source=Path("links.yaml"),
    )


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [("S1-A", "S2-B", "same", "S1-A"), ("S2-B", "S1-A", "distinct", None)],
            "links 1 and 2 decide the pair S1-A / S2-B differently",
        ),
        (
            [("S1-A", "S2-B", "same", "S1-A"), ("S1-A", "S2-B", "same", "S2-B")],
            "links 1 and 2 decide the pair",
        ),
        (
            [("S1-A", "S2-B", "same", "S2-B"), ("S2-B", "S3-C", "same", "S3-C")],
            "link 1 keeps S2-B, link 2 drops it",
        ),
        (
            [("S1-A", "S2-B", "same", "S1-A"), ("S3-C", "S2-B", "same", "S3-C")],
            "links 1 and 2 keep both S1-A and S3-C",
        ),
        (
            [
                ("S1-A", "S2-B", "same", "S1-A"),
                ("S1-A", "S3-C", "same", "S1-A"),
                ("S2-B", "S3-C", "distinct", None),
            ],
            "link 3 says S2-B and S3-C are distinct",
        ),
    ],
)
def test_contradictory_decisions_are_an_error(
    rows: list[tuple[str, str, str, str | None]], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        check(links(*rows))
    assert "links.yaml: links" in str(caught.value)


def test_one_pair_named_by_pseudonym_and_by_site_key_is_one_pair() -> None:
    secret = b"0123456789abcdef0123"
    aliases = pl.DataFrame({"patient_key": KEYS, "pseudonym": [pseudonym(secret, k) for k in KEYS]})
    frame = links(
        (pseudonym(secret, "S1-A"), pseudonym(secret, "S2-B"), "same", pseudonym(secret, "S1-A")),
        ("S1-A", "S2-B", "distinct", None),
    )
    # named as the file first names each patient
    first = f"decide the pair {pseudonym(secret, 'S1-A')} / {pseudonym(secret, 'S2-B')} differently"
    with pytest.raises(ConfigError, match=first):
        check(frame, aliases)


@pytest.mark.parametrize(
    "rows",
    [
        [("S1-A", "S2-B", "same", "S1-A"), ("S2-B", "S1-A", "distinct", None)],
        [("S1-A", "S2-B", "same", "S2-B"), ("S2-B", "S3-C", "same", "S3-C")],
        [("S1-A", "S2-B", "same", "S1-A"), ("S3-C", "S2-B", "same", "S3-C")],
        [
            ("S1-A", "S2-B", "same", "S1-A"),
            ("S1-A", "S3-C", "same", "S1-A"),
            ("S2-B", "S3-C", "distinct", None),
        ],
        [("S1-A", "S1-E", "distinct", None)],  # a warning, not an error
    ],
)
def test_a_file_written_in_pseudonyms_is_answered_in_pseudonyms(
    rows: list[tuple[str, str, str, str | None]],
) -> None:
    """The consortium never sees a site's local ids, not even in an error about its links."""
    secret = b"0123456789abcdef0123"
    alias = {k: pseudonym(secret, k) for k in KEYS}
    aliases = pl.DataFrame({"patient_key": KEYS, "pseudonym": [alias[k] for k in KEYS]})
    frame = links(*[(alias[a], alias[b], d, alias[k] if k else None) for a, b, d, k in rows])
    try:
        _, warnings = check(frame, aliases)
        said = " ".join(warnings["message"].to_list())
        assert warnings.height == 1
    except ConfigError as exc:
        said = str(exc)
    assert "PSN-" in said
    assert not any(key in said for key in KEYS), said


def test_consistent_links_pass_unchanged() -> None:
    frame = links(
        ("S1-A", "S2-B", "same", "S1-A"),
        ("S3-C", "S1-A", "same", "S1-A"),
        ("S2-B", "S1-A", "same", "S1-A"),  # the same decision twice is fine
    )
    kept, warnings = check(frame)
    assert kept.equals(frame) and warnings.height == 0
    # A keep on a 'distinct' link means nothing, so it cannot contradict the other link.
    distinct = links(("S2-B", "S3-C", "distinct", None), ("S3-C", "S2-B", "distinct", "S3-C"))
    assert check(distinct)[0].height == 2


def test_links_that_cannot_apply_are_warnings_and_left_out() -> None:
    frame = links(
        ("S1-A", "S9-TYPO", "same", "S1-A"),
        ("S1-A", "S1-E", "distinct", None),  # both patients exist, but at the same site
        ("S1-A", "S2-B", "same", "S1-A"),
    )
    kept, warnings = check(frame)
    assert kept.rows() == [frame.row(2)]
    assert warnings["rule_id"].to_list() == [LINK_IGNORED] * 2
    assert warnings["severity"].to_list() == ["warning"] * 2
    assert warnings["message"].to_list() == [
        "link 1 ignored: S9-TYPO is not a patient of the merged versions",
        "link 2 ignored: S1-A and S1-E are patients of the same site (a merge links patients "
        "of different sites)",
    ]
    assert warnings["source_row"].to_list() == [1, 2]


def test_an_ignored_link_never_echoes_an_identifier_written_as_its_key() -> None:
    # A key that is no patient is echoed in findings.json (merge output): a name or a record
    # number written there by mistake must be masked like any other echoed value.
    frame = links(
        ("Jane Doe", "S2-B", "distinct", None),
        ("S1-A", "MRN 12345678", "distinct", None),
        ("S1-A", "S9-TYPO", "distinct", None),
    )
    _, warnings = check(frame)
    assert warnings["message"].to_list() == [
        "link 1 ignored: *** is not a patient of the merged versions",
        "link 2 ignored: *** is not a patient of the merged versions",
        "link 3 ignored: S9-TYPO is not a patient of the merged versions",
    ]


def link_file(folder: Path, second: str) -> Path:
    """A YAML link file: SITE_A-1 and SITE_B-1 are the same (keep SITE_A-1), then ``second``."""
    path = folder / "links.yaml"
    first = "{key_a: SITE_A-1, key_b: SITE_B-1, decision: same, keep: SITE_A-1}"
    path.write_text(f"links:\n  - {first}\n  - {second}\n", encoding="utf-8")
    return path


def test_merge_with_contradictory_links_exits_2_and_writes_nothing(
    registry: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    path = link_file(tmp_path, "{key_a: SITE_B-1, key_b: SITE_A-1, decision: distinct}")
    out = tmp_path / "m"
    with pytest.raises(ConfigError, match="decide the pair"):
        merge_registry(registry, out, secret=SECRET, links_path=path)
    assert not out.exists()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cartreg",
            "registry",
            "merge",
            "--out",
            str(out),
            "--registry",
            str(registry),
            "--links",
            str(path),
            "--no-pseudonyms",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not out.exists()


def test_merge_warns_about_a_link_to_an_unknown_patient(
    registry: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    path = link_file(tmp_path, "{key_a: SITE_A-9, key_b: SITE_B-1, decision: distinct}")
    result = merge_registry(registry, tmp_path / "m", no_pseudonyms=True, links_path=path)
    ignored = result.findings.filter(pl.col("rule_id") == LINK_IGNORED)
    assert ignored["message"].to_list() == [
        "link 2 ignored: SITE_A-9 is not a patient of the merged versions"
    ]
    assert result.manifest["duplicates"]["linked_same"] == 1
    stored = json.loads((tmp_path / "m" / "findings.json").read_text(encoding="utf-8"))
    assert any(f["rule_id"] == LINK_IGNORED for f in stored)
