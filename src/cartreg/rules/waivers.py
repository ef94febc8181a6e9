"""Waivers: known findings a coordinator accepted, by finding id, with a justification and an
expiry date. An expired waiver no longer hides its finding (and is listed so it can be renewed)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cartreg.errors import ConfigError
from cartreg.yamlio import entries, load_yaml

if TYPE_CHECKING:
    import polars as pl

# Waivers decided per finding instead of listed by finding id (the registry's waived queries,
# which know a finding by its fingerprint): given findings, the ``finding_id``,
# ``justification`` and ``expires`` (ISO date text) of those to hide.
WaiverLookup = Callable[["pl.DataFrame"], "pl.DataFrame"]

_KEYS = {"finding_id", "justification", "expires", "rule_id", "approved_by"}


@dataclass(frozen=True)
class Waiver:
    finding_id: str
    justification: str
    expires: dt.date
    rule_id: str | None = None
    approved_by: str | None = None

    def active(self, as_of: dt.date) -> bool:
        return as_of <= self.expires


def waiver_frame(waivers: Sequence[Waiver]) -> pl.DataFrame:
    """``finding_id``, ``justification``, ``expires`` (ISO text) of ``waivers``, as the rule
    engine and the report join them to findings."""
    import polars as pl

    return pl.DataFrame(
        {
            "finding_id": [w.finding_id for w in waivers],
            "justification": [w.justification for w in waivers],
            "expires": [w.expires.isoformat() for w in waivers],
        },
        schema={"finding_id": pl.String, "justification": pl.String, "expires": pl.String},
    )


def parse_waivers(raw: Any, path: Path | str) -> tuple[Waiver, ...]:
    out: list[Waiver] = []
    seen: dict[str, str] = {}
    for key, item in entries(raw, path=path, section="waivers", allowed=_KEYS, noun="waiver"):
        fid, why, expires = item.get("finding_id"), item.get("justification"), item.get("expires")
        if not isinstance(fid, str) or not fid.strip():
            raise ConfigError("'finding_id' is required", path=path, key=f"{key}.finding_id")
        if fid.strip() in seen:
            # Two expiries for one finding: which one holds would depend on the order.
            raise ConfigError(
                f"finding {fid.strip()[:20]} is waived twice (the first is {seen[fid.strip()]})",
                path=path,
                key=key,
                hint="keep one waiver per finding",
            )
        seen[fid.strip()] = key
        for name in ("rule_id", "approved_by"):
            if item.get(name) is not None and not isinstance(item.get(name), str):
                raise ConfigError(f"'{name}' must be text", path=path, key=f"{key}.{name}")
        if not isinstance(why, str) or not why.strip():
            raise ConfigError(
                "a waiver needs a 'justification'", path=path, key=f"{key}.justification"
            )
        if isinstance(expires, str):
            try:
                expires = dt.date.fromisoformat(expires)
            except ValueError:
                expires = None
        # A YAML timestamp is a datetime, which passes for a date but cannot be compared with one.
        if not isinstance(expires, dt.date) or isinstance(expires, dt.datetime):
            raise ConfigError(
                "'expires' must be a date YYYY-MM-DD", path=path, key=f"{key}.expires"
            )
        out.append(
            Waiver(
                fid.strip(),
                " ".join(why.split()),
                expires,
                item.get("rule_id"),
                item.get("approved_by"),
            )
        )
    return tuple(out)


def load_waivers(path: Path | str) -> tuple[Waiver, ...]:
    return parse_waivers(load_yaml(Path(path)), path)
