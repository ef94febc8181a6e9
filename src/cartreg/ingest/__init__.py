"""Site ingestion: readers for export formats, the per-site YAML mapping, and the pipeline."""

from cartreg.ingest.pipeline import IngestResult, ingest_submission

__all__ = ["IngestResult", "ingest_submission"]
