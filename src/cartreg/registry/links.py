"""Reviewed link decisions, checked before a merge applies them.

A link file decides candidate duplicate pairs: ``same`` (keep one record) or ``distinct``. A
merge must not guess between decisions that cannot all hold, so these are errors (exit 2,
nothing written), found after pseudonyms are turned back into site keys:

* one pair decided twice, differently (``same`` and ``distinct``, or two different ``keep``);
* a patient kept by one ``same`` link and dropped by another;
* ``same`` links that make several patients one person but keep more than one of them;
* a ``distinct`` link between two patients that ``same`` links make one person.

A link that cannot apply is a warning (``REG-LINK-IGNORED``) and is left out: a key that is no
patient of the merged versions (a typo, a withdrawn patient), or two patients of the same site
(a merge links patients of different sites; a site resolves its own duplicates).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from cartreg.errors import ConfigError
from cartreg.exprs import format_text
from cartreg.findings import empty_findings, findings_frame, rule_columns
from cartreg.redact import redact_expr

LINK_IGNORED = "REG-LINK-IGNORED"
_PAIR = ["__lo", "__hi"]
_KEYS = ("key_a", "key_b", "keep")


def _as_written(links: pl.DataFrame) -> dict[str, str]:
    """Each site key of ``links`` as the file wrote it (a pseudonym stays a pseudonym): what
    messages show, so a consortium that writes pseudonyms is never shown local ids."""
    shown: dict[str, str] = {}
    for c in _KEYS:
        pairs = links.select(c, f"__written_{c}").drop_nulls().unique(c, keep="first")
        for key, written in pairs.iter_rows():
            shown.setdefault(key, written)
    return shown


def _canonical(links: pl.DataFrame, aliases: pl.DataFrame | None) -> pl.DataFrame:
    """Links with pseudonyms replaced by site keys, numbered as in the file (1-based)."""
    # Messages echo a key as written; one that is a name or a record number typed by mistake
    # would otherwise reach findings.json, so it is masked like any echoed value.
    out = links.with_row_index("link", offset=1).with_columns(
        redact_expr(pl.col(c)).alias(f"__written_{c}") for c in _KEYS
    )
    if aliases is not None and aliases.height:
        back = dict(
            zip(aliases["pseudonym"].to_list(), aliases["patient_key"].to_list(), strict=True)
        )
        out = out.with_columns(pl.col(c).replace(back) for c in _KEYS)
    is_same = pl.col("decision") == "same"
    return out.with_columns(
        pl.when(is_same).then(pl.col("keep")).alias("keep"),  # a keep means nothing otherwise
        pl.min_horizontal("key_a", "key_b").alias("__lo"),
        pl.max_horizontal("key_a", "key_b").alias("__hi"),
        pl.when(is_same)
        .then(pl.when(pl.col("keep") == pl.col("key_a")).then("key_b").otherwise("key_a"))
        .alias("__drop"),
    )


def _ignored(links: pl.DataFrame, why: pl.Expr, source: Path) -> pl.DataFrame:
    if links.height == 0:
        return empty_findings()
    fixed = rule_columns(
        LINK_IGNORED, "warning", "conformance", table="patients", column="patient_key"
    )
    return findings_frame(
        links.select(
            *fixed,
            pl.lit(source.name).alias("source_file"),
            pl.col("link").cast(pl.Int64).alias("source_row"),
            format_text("link {} ignored: {}", pl.col("link"), why).alias("message"),
        )
    )


def _contradiction(source: Path, message: str) -> ConfigError:
    return ConfigError(
        message, path=source, key="links", hint="correct the link file; nothing was merged"
    )


def _check_pairs(links: pl.DataFrame, source: Path, shown: dict[str, str]) -> None:
    """One decision per pair, and no patient both kept and dropped."""
    twice = (
        links.group_by(_PAIR, maintain_order=True)
        .agg(pl.col("link"), pl.struct("decision", "keep").n_unique().alias("n"))
        .filter(pl.col("n") > 1)
    )
    if twice.height:
        first = twice.row(0, named=True)
        raise _contradiction(
            source,
            f"links {first['link'][0]} and {first['link'][1]} decide the pair "
            f"{shown[first['__lo']]} / {shown[first['__hi']]} differently",
        )
    same = links.filter(pl.col("decision") == "same")
    both = same.select("link", pl.col("keep").alias("key")).join(
        same.select(pl.col("link").alias("other"), pl.col("__drop").alias("key")), on="key"
    )
    if both.height:
        first = both.sort("link", "other").row(0, named=True)
        raise _contradiction(
            source,
            f"link {first['link']} keeps {shown[first['key']]}, link {first['other']} drops it",
        )


def _check_clusters(links: pl.DataFrame, source: Path, shown: dict[str, str]) -> None:
    """``same`` links joined into persons: one kept record each, no ``distinct`` inside."""
    parent: dict[str, str] = {}

    def root(key: str) -> str:
        while parent.setdefault(key, key) != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    same = links.filter(pl.col("decision") == "same")
    # A loop over reviewed links (written by people: thousands at most), not over data rows.
    for a, b in same.select("key_a", "key_b").iter_rows():
        parent[root(a)] = root(b)
    dropped = set(same["__drop"].to_list())
    kept: dict[str, tuple[str, int]] = {}
    for link, keep in same.select("link", "keep").iter_rows():
        if keep in dropped:
            continue
        person = root(keep)
        if person in kept and kept[person][0] != keep:
            other, first = kept[person]
            raise _contradiction(
                source,
                f"links {first} and {link} keep both {shown[other]} and {shown[keep]}, which "
                "the 'same' links make one patient",
            )
        kept.setdefault(person, (keep, link))
    for link, a, b in (
        links.filter(pl.col("decision") == "distinct").select("link", "key_a", "key_b").iter_rows()
    ):
        if a in parent and b in parent and root(a) == root(b):
            raise _contradiction(
                source,
                f"link {link} says {shown[a]} and {shown[b]} are distinct, but 'same' links "
                "make them one patient",
            )


def check_links(
    links: pl.DataFrame,
    *,
    patients: pl.DataFrame,
    aliases: pl.DataFrame | None,
    source: Path | str,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The links that apply (keys as in the file) and REG-LINK-IGNORED warnings for the rest;
    ConfigError for contradictory decisions.

    ``patients`` are the merged versions' patients (``patient_key`` as site keys, ``site_id``),
    ``aliases`` the pseudonym map of this merge.
    """
    source = Path(source)
    numbered = _canonical(links, aliases)
    site_of = patients.select(pl.col("patient_key").cast(pl.String), "site_id").unique(
        "patient_key"
    )
    known = site_of["patient_key"].drop_nulls().implode()
    is_known = pl.col("key_a").is_in(known) & pl.col("key_b").is_in(known)
    unknown = numbered.filter(~is_known)
    known_links = (
        numbered.filter(is_known)
        .join(site_of.rename({"patient_key": "key_a", "site_id": "__sa"}), on="key_a", how="left")
        .join(site_of.rename({"patient_key": "key_b", "site_id": "__sb"}), on="key_b", how="left")
    )
    different_sites = pl.col("__sa") != pl.col("__sb")
    applying = known_links.filter(different_sites)
    unpaired = known_links.filter(~different_sites)
    shown = _as_written(numbered)
    _check_pairs(applying, source, shown)
    _check_clusters(applying, source, shown)
    unknown_key = (
        pl.when(pl.col("key_a").is_in(known))
        .then(pl.col("__written_key_b"))
        .otherwise(pl.col("__written_key_a"))
    )
    warnings = [
        _ignored(
            unknown, format_text("{} is not a patient of the merged versions", unknown_key), source
        ),
        _ignored(
            unpaired,
            format_text(
                "{} and {} are patients of the same site (a merge links patients of "
                "different sites)",
                pl.col("__written_key_a"),
                pl.col("__written_key_b"),
            ),
            source,
        ),
    ]
    found = [w for w in warnings if w.height]
    kept = links.with_row_index("link", offset=1).join(
        applying.select("link"), on="link", how="semi", maintain_order="left"
    )
    return kept.drop("link"), (pl.concat(found) if found else empty_findings())
