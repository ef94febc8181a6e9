"""Readers: every export format becomes text columns plus ``source_file``/``source_row``."""

from cartreg.ingest.readers.base import ReadResult

__all__ = ["ReadResult"]
