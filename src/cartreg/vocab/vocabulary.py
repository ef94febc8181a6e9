"""Vocabulary files (``schemas/vocabularies/*.yaml``) and the lookup API."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cartreg.errors import ConfigError, did_you_mean
from cartreg.vocab.normalize import normalize_key
from cartreg.yamlio import load_yaml

if TYPE_CHECKING:
    import polars as pl

_VOCAB_KEYS = {"vocabulary", "version", "description", "code_systems", "terms"}
_TERM_KEYS = {"code", "label", "synonyms", "codes", "attributes", "description"}


@dataclass(frozen=True)
class Term:
    """One canonical value: its code (what the CDM stores), label, synonyms and external codes."""

    code: str
    label: str
    synonyms: tuple[str, ...] = ()
    codes: Mapping[str, str] = field(default_factory=dict)
    attributes: Mapping[str, Any] = field(default_factory=dict)

    def spellings(self) -> tuple[str, ...]:
        """Every string that maps to this term: code, label and synonyms."""
        return (self.code, self.label, *self.synonyms)


@dataclass(frozen=True)
class Vocabulary:
    """A named list of terms with a normalized-key index for lookups."""

    name: str
    version: str
    description: str
    terms: tuple[Term, ...]
    path: Path | None = None
    _index: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(t.code for t in self.terms)

    def term(self, code: str) -> Term:
        for t in self.terms:
            if t.code == code:
                return t
        raise KeyError(code)

    def lookup(self, raw: str | None) -> Term | None:
        """The term a raw string means, or None when it means none (never a guess)."""
        if raw is None:
            return None
        code = self._index.get(normalize_key(raw))
        return self.term(code) if code is not None else None

    def code_for(self, raw: str | None) -> str | None:
        """Like :meth:`lookup` but returns the code only."""
        if raw is None:
            return None
        return self._index.get(normalize_key(raw))

    def with_overrides(self, overrides: Mapping[str, str], *, source: str) -> Vocabulary:
        """A copy in which extra raw spellings (a site's local labels or codes) map to terms.

        Overrides win over the shared synonyms, so a site whose "1" means female can say so.
        """
        index = dict(self._index)
        for raw, code in overrides.items():
            if code not in self.codes:
                raise ConfigError(
                    f"'{code}' is not a term of vocabulary '{self.name}'",
                    path=source,
                    key=str(raw),
                    hint=did_you_mean(code, self.codes) or f"terms: {', '.join(self.codes)}",
                )
            key = normalize_key(str(raw))
            if key:
                index[key] = code
        return Vocabulary(self.name, self.version, self.description, self.terms, self.path, index)

    def map_series(self, values: pl.Series) -> pl.Series:
        """Map raw strings to codes, vectorized over distinct values; unmapped become null.

        Only the distinct raw values go through Python (a few dozen), never every row.
        """
        import polars as pl

        distinct = values.drop_nulls().unique()
        mapping = {raw: self._index.get(normalize_key(raw)) for raw in distinct.to_list()}
        return values.replace_strict(mapping, default=None, return_dtype=pl.String)


def _term_from_yaml(raw: Any, path: Path, where: str) -> Term:
    if not isinstance(raw, dict):
        raise ConfigError("a term must be a mapping with at least 'code'", path=path, key=where)
    unknown = set(raw) - _TERM_KEYS
    if unknown:
        bad = sorted(unknown)[0]
        raise ConfigError(
            f"unknown term attribute '{bad}'",
            path=path,
            key=f"{where}.{bad}",
            hint=did_you_mean(bad, _TERM_KEYS) or f"allowed: {', '.join(sorted(_TERM_KEYS))}",
        )
    code = raw.get("code")
    if not isinstance(code, str) or not code:
        raise ConfigError("term needs a non-empty string 'code'", path=path, key=f"{where}.code")
    synonyms = raw.get("synonyms") or []
    if not isinstance(synonyms, list):
        raise ConfigError("'synonyms' must be a list", path=path, key=f"{where}.synonyms")
    return Term(
        code=code,
        label=str(raw.get("label") or code),
        synonyms=tuple(str(s) for s in synonyms),
        codes={str(k): str(v) for k, v in (raw.get("codes") or {}).items()},
        attributes=dict(raw.get("attributes") or {}),
    )


def load_vocabulary(path: Path) -> Vocabulary:
    """Load and check one vocabulary file; any problem is a ConfigError naming file and key."""
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError("a vocabulary file must be a mapping", path=path)
    unknown = set(data) - _VOCAB_KEYS
    if unknown:
        bad = sorted(unknown)[0]
        raise ConfigError(
            f"unknown key '{bad}'", path=path, key=bad, hint=did_you_mean(bad, _VOCAB_KEYS)
        )
    name = data.get("vocabulary")
    if name != path.stem:
        raise ConfigError(
            f"'vocabulary' must equal the file name '{path.stem}' (got {name!r})",
            path=path,
            key="vocabulary",
        )
    raw_terms = data.get("terms")
    if not isinstance(raw_terms, list) or not raw_terms:
        raise ConfigError("'terms' must be a non-empty list", path=path, key="terms")
    terms = tuple(_term_from_yaml(t, path, f"terms[{i}]") for i, t in enumerate(raw_terms))

    index: dict[str, str] = {}
    for i, term in enumerate(terms):
        if term.code in {t.code for t in terms[:i]}:
            raise ConfigError(
                f"duplicate term code '{term.code}'", path=path, key=f"terms[{i}].code"
            )
        for spelling in term.spellings():
            key = normalize_key(spelling)
            if not key:
                continue
            other = index.setdefault(key, term.code)
            if other != term.code:
                raise ConfigError(
                    f"spelling '{spelling}' of term '{term.code}' is indistinguishable from "
                    f"a spelling of term '{other}'",
                    path=path,
                    key=f"terms[{i}].synonyms",
                    hint="remove or reword one of them",
                )
    return Vocabulary(
        name=name,
        version=str(data.get("version", "")),
        description=str(data.get("description", "")).strip(),
        terms=terms,
        path=path,
        _index=index,
    )


class Vocabularies(Mapping[str, Vocabulary]):
    """All vocabularies of a schemas folder, by name."""

    def __init__(self, vocabularies: Iterable[Vocabulary]) -> None:
        self._by_name = {v.name: v for v in vocabularies}

    def __getitem__(self, name: str) -> Vocabulary:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._by_name))

    def __len__(self) -> int:
        return len(self._by_name)


def load_vocabularies(folder: Path) -> Vocabularies:
    """Load every ``*.yaml`` vocabulary in ``folder``."""
    if not folder.is_dir():
        raise ConfigError("vocabulary folder not found", path=folder, hint="check --schemas")
    return Vocabularies(load_vocabulary(p) for p in sorted(folder.glob("*.yaml")))
