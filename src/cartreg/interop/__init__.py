"""Interoperability with other data-quality tools (optional dependencies, imported lazily)."""
