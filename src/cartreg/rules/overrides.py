"""Per-site threshold overrides: a site may tolerate more (or fewer) violations of a rule.

```yaml
overrides:
  - {site_id: REDCAP_A, rule_id: CP-004, threshold_pct: 20, reason: "no marrow before LD"}
```
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cartreg.errors import ConfigError
from cartreg.yamlio import entries, load_yaml

_KEYS = {"site_id", "rule_id", "threshold_pct", "reason"}


@dataclass(frozen=True)
class Override:
    site_id: str
    rule_id: str
    threshold_pct: float
    reason: str = ""


def parse_overrides(raw: Any, path: Path | str) -> tuple[Override, ...]:
    out: list[Override] = []
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
        out.append(Override(site, rule, float(pct), str(item.get("reason", ""))))
    return tuple(out)


def load_overrides(path: Path | str) -> tuple[Override, ...]:
    return parse_overrides(load_yaml(Path(path)), path)
