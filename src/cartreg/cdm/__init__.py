"""The common data model (CDM): tables declared in ``schemas/``, enforced with pandera-polars.

Public API::

    cdm = load_cdm()                       # or load_cdm("path/to/schemas")
    findings = validate_table("patients", frame, cdm=cdm)
    findings = validate_tables("harmonized/")   # a folder of <table>.parquet|csv, or a dict
"""

from cartreg.cdm.model import CDM, ColumnSpec, TableSpec, load_cdm
from cartreg.cdm.validate import validate_table, validate_tables

__all__ = [
    "CDM",
    "ColumnSpec",
    "TableSpec",
    "load_cdm",
    "validate_table",
    "validate_tables",
]
