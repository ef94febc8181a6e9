"""Normalization of raw strings to lookup keys.

Matching is insensitive to case, whitespace, punctuation and accents, with one exception that
carries meaning in this domain: a ``+`` or ``-`` that ends a word ("CD19-", "Ph+", "MRD-") is a
sign, read as "pos"/"neg", so "CD19-" and "CD19+" never collapse into the same key. A hyphen
inside a word ("tisa-cel", "CD19-/dim") is ordinary punctuation.
"""

from __future__ import annotations

import re
import unicodedata

_DASHES = dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2014\u2212\ufe63\uff0d"), "-")
_PLUSES = dict.fromkeys(map(ord, "\ufe62\uff0b"), "+")
_NON_ALNUM = re.compile(r"[^0-9a-z]+")
_TRAILING_SIGNS = re.compile(r"([+-]+)$")


def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _token_key(token: str) -> str:
    # Drop trailing punctuation that is not a sign ("CD19-." -> "CD19-"), then read the sign.
    core = token.rstrip("".join(ch for ch in set(token) if not ch.isalnum() and ch not in "+-"))
    sign = ""
    match = _TRAILING_SIGNS.search(core)
    if match:
        sign = "pos" if match.group(1)[-1] == "+" else "neg"
        core = core[: match.start()]
    return _NON_ALNUM.sub("", core) + sign


def normalize_key(raw: str) -> str:
    """Lookup key of a raw string; "" for blank input.

    A string made only of punctuation ("?", "<", "<=") keys to itself without whitespace, so
    that such synonyms can still be declared.
    """
    text = _strip_accents(raw.translate(_DASHES).translate(_PLUSES)).casefold()
    tokens = text.split()
    if not tokens:
        return ""
    key = "".join(_token_key(tok) for tok in tokens)
    if key:
        return key
    return "".join(tokens)
