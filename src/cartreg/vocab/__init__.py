"""Controlled vocabularies as data: terms, synonyms, codes, and a forgiving lookup."""

from cartreg.vocab.normalize import normalize_key
from cartreg.vocab.vocabulary import (
    Term,
    Vocabularies,
    Vocabulary,
    load_vocabularies,
    load_vocabulary,
)

__all__ = [
    "Term",
    "Vocabularies",
    "Vocabulary",
    "load_vocabularies",
    "load_vocabulary",
    "normalize_key",
]
