"""docs/rules.md is generated from rules/: fail on drift."""

from __future__ import annotations

from cartreg.paths import repo_root
from cartreg.rules import Rule
from cartreg.rules.docs import render_markdown


def test_rules_md_is_up_to_date(catalog: tuple[Rule, ...]) -> None:
    current = (repo_root() / "docs" / "rules.md").read_text(encoding="utf-8")
    assert current == render_markdown(catalog), (
        "docs/rules.md is stale: run `cartreg rules docs --out docs/rules.md`"
    )


def test_every_rule_documented(catalog: tuple[Rule, ...]) -> None:
    text = render_markdown(catalog)
    for rule in catalog:
        assert f"#### {rule.id}" in text
        assert rule.guidance in text
