"""The consortium registry: versioned site submissions in one DuckDB file, diffs, and merge.

Public API::

    init_registry("registry.duckdb")
    result = submit_output("registry.duckdb", "out/SITE_A", site="SITE_A", mapping_path=...)
    with open_registry("registry.duckdb") as reg:
        registry_status(reg); diff_versions(reg, "SITE_A")
    merge_registry("registry.duckdb", "merged/", secret=load_secret())
"""

from cartreg.registry.diff import DiffReport, diff_versions
from cartreg.registry.merge import MergeResult, merge_registry
from cartreg.registry.pseudonym import load_secret, pseudonym
from cartreg.registry.status import registry_status
from cartreg.registry.store import (
    STORE_SCHEMA_VERSION,
    Registry,
    RegistryError,
    RegistryLockedError,
    init_registry,
    open_registry,
)
from cartreg.registry.submit import SubmitResult, decide, submit_output

__all__ = [
    "STORE_SCHEMA_VERSION",
    "DiffReport",
    "MergeResult",
    "Registry",
    "RegistryError",
    "RegistryLockedError",
    "SubmitResult",
    "decide",
    "diff_versions",
    "init_registry",
    "load_secret",
    "merge_registry",
    "open_registry",
    "pseudonym",
    "registry_status",
    "submit_output",
]
