"""Endpoint declarations (``endpoints/*.yaml``) and their loader. No polars here.

An endpoint is data: a population, an origin, event sources, censoring sources, competing
events and parameters. The names used for populations, origins and sources form a small,
fixed vocabulary that the derivation engine (``derive.py``) knows how to build, in the
spirit of admiral's ``event_source`` / ``censor_source`` objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cartreg.errors import ConfigError, did_you_mean
from cartreg.paths import endpoints_dir
from cartreg.yamlio import load_yaml

Kind = Literal["time_to_event", "proportion"]

POPULATIONS: dict[str, str] = {
    "all_infused": "every patient with an index CAR T infusion",
    "remission": "patients with a CR/CRi after the index infusion, before any progression",
    "progressed": "patients with a progression after the index infusion",
    "salvaged": "progressed patients who received at least one salvage line",
}
ORIGINS: dict[str, str] = {
    "index_infusion": "day 0, the index CAR T infusion",
    "first_remission": "the first CR/CRi after the index infusion",
    "first_progression": "the first progression after the index infusion",
}
EVENT_SOURCES: dict[str, str] = {
    "death": "follow_up.death_day",
    "progression": "progression_events.progression_day (first progression)",
    "relapse": "progression_events.progression_day (relapse after the remission)",
    "salvage_response": "salvage_treatments.best_response",
}
CENSOR_SOURCES: dict[str, str] = {
    "last_known_alive": "latest of follow_up.last_contact_day and any recorded event day",
    "last_disease_assessment": "disease_assessments.assessment_day (latest)",
    "last_progression_free": "latest of the last disease assessment and"
    " follow_up.disease_status_day when disease_status is PROGRESSION_FREE",
}

# Defaults for every parameter an endpoint may set. An endpoint file overrides a subset.
DEFAULT_PARAMETERS: dict[str, Any] = {
    "burden_threshold_pct": 5.0,
    "emd_counts_high": True,
    "censor_at_hct": False,
    "nonresponse_event_date": "ASSESSMENT",
    "count_crh_as_cr": False,
    "include_mrd_relapse": False,
    "death_without_relapse": "CENSOR",
    "salvage_line": "FIRST",
    "group_priority": ["CAR_T", "ANTIBODY", "CHEMOTHERAPY", "HCT", "OTHER"],
    "impute_day": "MID",
    "impute_month": "MID",
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "nonresponse_event_date": ("ASSESSMENT", "INDEX"),
    "death_without_relapse": ("CENSOR", "COMPETING"),
    "salvage_line": ("FIRST", "ANY"),
    "impute_day": ("FIRST", "MID", "LAST"),
    "impute_month": ("FIRST", "MID", "LAST"),
}
_KEYS = {
    "paramcd",
    "name",
    "kind",
    "description",
    "population",
    "origin",
    "events",
    "censors",
    "competing",
    "parameters",
    "landmarks_months",
}
_SOURCE_KEYS = {"source", "description"}


@dataclass(frozen=True)
class Source:
    """One event, censoring or competing source of an endpoint."""

    source: str
    description: str


@dataclass(frozen=True)
class Endpoint:
    """One endpoint declaration, with its parameters resolved against the defaults."""

    paramcd: str
    name: str
    kind: Kind
    description: str
    population: str
    origin: str
    events: tuple[Source, ...]
    censors: tuple[Source, ...] = ()
    competing: tuple[Source, ...] = ()
    parameters: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_PARAMETERS))
    landmarks_months: tuple[float, ...] = ()
    path: Path | None = None

    def param(self, name: str) -> Any:
        return self.parameters[name]

    def with_parameters(self, **overrides: Any) -> Endpoint:
        """A copy with some parameters changed (sensitivity analyses)."""
        unknown = set(overrides) - set(DEFAULT_PARAMETERS)
        if unknown:
            name = sorted(unknown)[0]
            raise ConfigError(
                f"unknown parameter '{name}'",
                path=self.path or self.paramcd,
                key="parameters",
                hint=did_you_mean(name, list(DEFAULT_PARAMETERS)),
            )
        merged = {**self.parameters, **overrides}
        return Endpoint(
            self.paramcd,
            self.name,
            self.kind,
            self.description,
            self.population,
            self.origin,
            self.events,
            self.censors,
            self.competing,
            merged,
            self.landmarks_months,
            self.path,
        )


def _sources(raw: Any, path: Path, key: str, allowed: Mapping[str, str]) -> tuple[Source, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError("must be a list of {source, description}", path=path, key=key)
    out: list[Source] = []
    for i, item in enumerate(raw):
        where = f"{key}[{i}]"
        if not isinstance(item, dict) or "source" not in item:
            raise ConfigError("each entry needs a 'source'", path=path, key=where)
        extra = set(item) - _SOURCE_KEYS
        if extra:
            raise ConfigError(f"unknown key '{sorted(extra)[0]}'", path=path, key=where)
        name = str(item["source"])
        if name not in allowed:
            raise ConfigError(
                f"unknown source '{name}'",
                path=path,
                key=where,
                hint=did_you_mean(name, list(allowed)) or f"one of {', '.join(sorted(allowed))}",
            )
        out.append(Source(name, str(item.get("description", name))))
    return tuple(out)


def _parameters(raw: Any, path: Path) -> dict[str, Any]:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("must be a mapping", path=path, key="parameters")
    params = dict(DEFAULT_PARAMETERS)
    for name, value in raw.items():
        key = f"parameters.{name}"
        if name not in DEFAULT_PARAMETERS:
            raise ConfigError(
                f"unknown parameter '{name}'",
                path=path,
                key=key,
                hint=did_you_mean(str(name), list(DEFAULT_PARAMETERS)),
            )
        default = DEFAULT_PARAMETERS[name]
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError("must be true or false", path=path, key=key)
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError("must be a non-negative number", path=path, key=key)
            value = float(value)
        elif isinstance(default, list):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError("must be a list of names", path=path, key=key)
        elif name in _CHOICES and value not in _CHOICES[name]:
            raise ConfigError(
                f"invalid value '{value}'",
                path=path,
                key=key,
                hint=f"one of {', '.join(_CHOICES[name])}",
            )
        params[name] = value
    return params


def load_endpoint(path: Path) -> Endpoint:
    """Read and check one endpoint file; every problem is a one-line ConfigError."""
    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError("an endpoint file must be a mapping", path=path)
    extra = set(raw) - _KEYS
    if extra:
        name = sorted(extra)[0]
        raise ConfigError(
            f"unknown key '{name}'", path=path, key=name, hint=did_you_mean(name, list(_KEYS))
        )
    for required in ("paramcd", "name", "kind", "population", "origin"):
        if required not in raw:
            raise ConfigError(f"missing '{required}'", path=path, key=required)
    paramcd = str(raw["paramcd"])
    if not paramcd.replace("_", "").isalnum() or paramcd.upper() != paramcd:
        raise ConfigError(
            "paramcd must be upper-case letters, digits and _", path=path, key="paramcd"
        )
    kind = raw["kind"]
    if kind not in ("time_to_event", "proportion"):
        raise ConfigError(
            f"invalid kind '{kind}'", path=path, key="kind", hint="time_to_event or proportion"
        )
    for key, allowed in (("population", POPULATIONS), ("origin", ORIGINS)):
        if raw[key] not in allowed:
            raise ConfigError(
                f"unknown {key} '{raw[key]}'",
                path=path,
                key=key,
                hint=did_you_mean(str(raw[key]), list(allowed)) or f"one of {', '.join(allowed)}",
            )
    events = _sources(raw.get("events"), path, "events", EVENT_SOURCES)
    if not events:
        raise ConfigError("an endpoint needs at least one event source", path=path, key="events")
    landmarks = raw.get("landmarks_months") or []
    if not isinstance(landmarks, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in landmarks
    ):
        raise ConfigError("must be a list of positive numbers", path=path, key="landmarks_months")
    return Endpoint(
        paramcd=paramcd,
        name=str(raw["name"]),
        kind=kind,
        description=" ".join(str(raw.get("description", "")).split()),
        population=str(raw["population"]),
        origin=str(raw["origin"]),
        events=events,
        censors=_sources(raw.get("censors"), path, "censors", CENSOR_SOURCES),
        competing=_sources(raw.get("competing"), path, "competing", EVENT_SOURCES),
        parameters=_parameters(raw.get("parameters"), path),
        landmarks_months=tuple(float(v) for v in landmarks),
        path=path,
    )


def load_endpoints(folder: Path | str | None = None) -> dict[str, Endpoint]:
    """All endpoint files of a folder (default: the bundled ``endpoints/``), keyed by paramcd."""
    root = endpoints_dir(folder)
    if not root.is_dir():
        raise ConfigError("endpoint folder not found", path=root, hint="give a folder of *.yaml")
    endpoints: dict[str, Endpoint] = {}
    for path in sorted(root.glob("*.yaml")):
        endpoint = load_endpoint(path)
        if endpoint.paramcd in endpoints:
            raise ConfigError(
                f"paramcd '{endpoint.paramcd}' also declared in {endpoints[endpoint.paramcd].path}",
                path=path,
                key="paramcd",
            )
        endpoints[endpoint.paramcd] = endpoint
    if not endpoints:
        raise ConfigError("no endpoint files (*.yaml) found", path=root)
    return endpoints
