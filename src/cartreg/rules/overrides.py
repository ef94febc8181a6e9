"""Per-site threshold overrides: a site may tolerate more (or fewer) violations of a rule.

```yaml
overrides:
  - {site_id: REDCAP_A, rule_id: CP-004, threshold_pct: 20, reason: "no marrow before LD"}
```
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cartreg.errors import ConfigError, did_you_mean
from cartreg.yamlio import entries, load_yaml

_KEYS = {"site_id", "rule_id", "threshold_pct", "reason"}


@dataclass(frozen=True)
class Override:
    site_id: str
    rule_id: str
    threshold_pct: float
    reason: str = ""
    # Where the override was written (file, YAML key), for messages about it.
    path: str = field(default="", compare=False)
    key: str = field(default="", compare=False)


def parse_overrides(raw: Any, path: Path | str) -> tuple[Override, ...]:
    out: list[Override] = []
    seen: dict[tuple[str, str], str] = {}
    for key, item in entries(raw, path=path, section="overrides", allowed=_KEYS, noun="override"):
        site, rule, pct = item.get("site_id"), item.get("rule_id"), item.get("threshold_pct")
        if not isinstance(site, str) or not isinstance(rule, str):
            raise ConfigError("'site_id' and 'rule_id' are required", path=path, key=key)
        if isinstance(pct, bool) or not isinstance(pct, int | float) or not 0 <= pct <= 100:
            raise ConfigError(
                "'threshold_pct' must be a number in [0, 100]",
                path=path,
                key=f"{key}.threshold_pct",
            )
        reason = item.get("reason", "")
        if not isinstance(reason, str):
            raise ConfigError("'reason' must be text", path=path, key=f"{key}.reason")
        if (site, rule) in seen:
            # Two thresholds for one rule at one site: one would win without a word.
            raise ConfigError(
                f"a second override of {rule} for site {site} (the first is {seen[site, rule]})",
                path=path,
                key=key,
                hint="keep one threshold per site and rule",
            )
        seen[site, rule] = key
        out.append(Override(site, rule, float(pct), reason, str(path), key))
    return tuple(out)


def check_rule_ids(overrides: Sequence[Override], rule_ids: Iterable[str]) -> None:
    """ConfigError for an override of a rule the run does not have: a misspelt id would
    otherwise leave the rule at its default threshold without a word."""
    known = set(rule_ids)
    for override in overrides:
        if override.rule_id not in known:
            raise ConfigError(
                f"override of unknown rule '{override.rule_id}'",
                path=override.path or "overrides",
                key=f"{override.key}.rule_id" if override.key else "",
                hint=did_you_mean(override.rule_id, sorted(known))
                or "give the id of a rule of the catalog (cartreg rules list)",
            )


def load_overrides(path: Path | str) -> tuple[Override, ...]:
    return parse_overrides(load_yaml(Path(path)), path)
