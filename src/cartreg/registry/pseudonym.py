"""Pseudonymous consortium patient keys: HMAC-SHA256 of the site-prefixed key with a secret.

The secret comes from ``$CARTREG_SECRET`` or a file and lives only in memory: it is never
written to the registry, the merged dataset or its manifest. The same secret maps the same
``<SITE>-<local id>`` to the same pseudonym in every merge, so resubmissions keep their keys;
without the secret nobody can recompute or reverse the mapping.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from pathlib import Path

import polars as pl

from cartreg.errors import ConfigError

SECRET_ENV = "CARTREG_SECRET"
MIN_SECRET_CHARS = 16
MAX_SECRET_BYTES = 4096
PREFIX = "PSN"
DIGEST_CHARS = 24  # 96 bits: collisions are negligible for any realistic registry


def load_secret(
    secret_file: Path | str | None = None, *, environ: Mapping[str, str] | None = None
) -> bytes | None:
    """The consortium secret from ``secret_file`` (preferred) or ``$CARTREG_SECRET``; None if
    neither is given. The secret is one line of text (surrounding whitespace is dropped)."""
    env = os.environ if environ is None else environ
    if secret_file is not None:
        path = Path(secret_file)
        text = _read_secret_file(path)
        where: Path | str = path
    elif env.get(SECRET_ENV):
        text = env[SECRET_ENV]
        where = f"${SECRET_ENV}"
    else:
        return None
    secret = text.strip()
    hint = f"use at least {MIN_SECRET_CHARS} random characters, e.g. `openssl rand -hex 32`"
    if not secret:
        raise ConfigError("consortium secret is empty", path=where, hint=hint)
    if any(ord(c) < 32 or ord(c) == 127 for c in secret):
        raise ConfigError(
            "consortium secret holds control characters or line breaks", path=where, hint=hint
        )
    if len(secret) < MIN_SECRET_CHARS:
        raise ConfigError(
            f"consortium secret is too short ({len(secret)} characters)", path=where, hint=hint
        )
    return secret.encode("utf-8")


def _read_secret_file(path: Path) -> str:
    hint = "write the secret as one line of text, e.g. `openssl rand -hex 32 > FILE`"
    if not path.is_file():  # a folder, a device (/dev/zero) or a pipe is not a secret file
        what = "not found" if not path.exists() else "not a regular file"
        raise ConfigError(f"secret file {what}", path=path, hint=hint)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read secret file: {exc.strerror}", path=path) from None
    if len(raw) > MAX_SECRET_BYTES:
        raise ConfigError(
            f"secret file is larger than {MAX_SECRET_BYTES} bytes: is it the right file?",
            path=path,
            hint=hint,
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("secret file is binary, not text", path=path, hint=hint) from None


def pseudonym(secret: bytes, patient_key: str) -> str:
    """``PSN-<24 hex digits>`` keyed hash of a site-prefixed patient key."""
    digest = hmac.new(secret, patient_key.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{PREFIX}-{digest[:DIGEST_CHARS]}"


def pseudonym_map(keys: pl.Series, secret: bytes) -> pl.DataFrame:
    """``patient_key`` -> ``pseudonym`` for the distinct non-null keys."""
    distinct = keys.drop_nulls().unique().sort().to_list()
    return pl.DataFrame(
        {
            "patient_key": distinct,
            "pseudonym": [pseudonym(secret, k) for k in distinct],  # one hash per patient
        },
        schema={"patient_key": pl.String, "pseudonym": pl.String},
    )


def id_columns(frame: pl.DataFrame) -> list[str]:
    """Columns that may embed the patient key: ``patient_key``, string ``*_id`` columns and the
    ``*_derived_from`` provenance of derived values (the id of the row they came from)."""
    return [
        c
        for c, t in frame.schema.items()
        if t == pl.String
        and (
            c == "patient_key"
            or (c.endswith("_id") and c != "site_id")
            or c.endswith("_derived_from")
        )
    ]


def pseudonymize_frame(frame: pl.DataFrame, mapping: pl.DataFrame) -> pl.DataFrame:
    """Replace the patient key, and the patient-key prefix of row ids like ``<key>-A1``."""
    if "patient_key" not in frame.columns or frame.height == 0:
        return frame
    cols = id_columns(frame)
    joined = frame.join(
        mapping.rename({"pseudonym": "__psn"}), on="patient_key", how="left", maintain_order="left"
    )
    key = pl.col("patient_key")
    rewritten = []
    for col in cols:
        c = pl.col(col)
        if col == "patient_key":
            rewritten.append(pl.col("__psn").alias(col))
            continue
        prefixed = c.str.starts_with(pl.concat_str([key, pl.lit("-")]))
        rewritten.append(
            pl.when(prefixed)
            .then(pl.concat_str([pl.col("__psn"), c.str.slice(key.str.len_chars())]))
            .otherwise(c)
            .alias(col)
        )
    # patient_key must be replaced last: the other rewrites read the original key.
    others = [e for e in rewritten if e.meta.output_name() != "patient_key"]
    out = joined.with_columns(others).with_columns(
        [e for e in rewritten if e.meta.output_name() == "patient_key"]
    )
    return out.drop("__psn")


def pseudonymize_tables(
    tables: Mapping[str, pl.DataFrame], secret: bytes
) -> tuple[dict[str, pl.DataFrame], pl.DataFrame]:
    """Pseudonymize every table; returns the tables and the key map (keep it in memory only)."""
    keys = (
        pl.concat(
            [
                t["patient_key"].cast(pl.String)
                for t in tables.values()
                if "patient_key" in t.columns
            ],
            how="vertical",
        )
        if any("patient_key" in t.columns for t in tables.values())
        else pl.Series([], dtype=pl.String)
    )
    mapping = pseudonym_map(keys, secret)
    return {name: pseudonymize_frame(t, mapping) for name, t in tables.items()}, mapping
