"""Per-site threshold overrides: a site may tolerate more (or fewer) violations of a rule.

```yaml
overrides:
  - {site_id: REDCAP_A, rule_id: CP-004, threshold_pct: 20, reason: "no marrow before LD"}
```
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cartreg.errors import ConfigError
from cartreg.yamlio import load_yaml

_KEYS = {"site_id", "rule_id", "threshold_pct", "reason"}


@dataclass(frozen=True)
class Override:
    site_id: str
    rule_id: str
    threshold_pct: float
    reason: str = ""


def parse_overrides(raw: Any, path: Path | str) -> tuple[Override, ...]:
    items = raw.get("overrides") if isinstance(raw, Mapping) else raw
    if not isinstance(items, list):
        raise ConfigError(
            "expected a list of overrides under 'overrides'", path=path, key="overrides"
        )
    out: list[Override] = []
    for i, item in enumerate(items):
        key = f"overrides[{i}]"
        if not isinstance(item, Mapping):
            raise ConfigError("an override must be a mapping", path=path, key=key)
        unknown = set(item) - _KEYS
        if unknown:
            raise ConfigError(
                f"unknown key '{sorted(unknown)[0]}'",
                path=path,
                key=key,
                hint=f"allowed: {', '.join(sorted(_KEYS))}",
            )
        site, rule, pct = item.get("site_id"), item.get("rule_id"), item.get("threshold_pct")
        if not isinstance(site, str) or not isinstance(rule, str):
            raise ConfigError("'site_id' and 'rule_id' are required", path=path, key=key)
        if isinstance(pct, bool) or not isinstance(pct, int | float) or not 0 <= pct <= 100:
            raise ConfigError(
                "'threshold_pct' must be a number in [0, 100]",
                path=path,
                key=f"{key}.threshold_pct",
            )
        out.append(Override(site, rule, float(pct), str(item.get("reason", ""))))
    return tuple(out)


def load_overrides(path: Path | str) -> tuple[Override, ...]:
    return parse_overrides(load_yaml(Path(path)), path)
