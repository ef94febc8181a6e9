"""Site mappings registered by a coordinator: the mapping the portal ingests a site's uploads with.

A site never sends its own mapping: the coordinating centre writes and reviews it (``cartreg
mapping``), then registers it with ``cartreg sites add SITE --mapping FILE``. The text is kept in
``portal_site_mappings``; registering again adds a row, and the newest row is used. Keeping the
text in the registry (not a path) means an upload is always ingested with exactly the mapping
the coordinator checked, and the registry file is the one thing to back up.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cartreg.errors import InputError
from cartreg.portal.users import check_site_id
from cartreg.registry.store import now_utc

if TYPE_CHECKING:
    from cartreg.cdm import CDM
    from cartreg.registry.store import Registry


@dataclass(frozen=True)
class SiteMapping:
    site_id: str
    registered_at: datetime
    registered_by: str
    mapping_sha256: str
    mapping_text: str

    def source_files(self, cdm: CDM | None = None) -> list[str]:
        """The file names the mapping reads (what a site is asked to upload)."""
        import tempfile

        from cartreg.cdm import load_cdm
        from cartreg.ingest.mapping import load_mapping

        with tempfile.TemporaryDirectory(prefix="cartreg-mapping-") as tmp:
            path = Path(tmp) / "mapping.yaml"
            path.write_text(self.mapping_text, encoding="utf-8")
            mapping = load_mapping(path, cdm or load_cdm())
        files = {s.file for s in mapping.sources.values()}
        files |= {s.dictionary for s in mapping.sources.values() if s.dictionary}
        return sorted(files)


def check_mapping(path: Path, site: str, cdm: CDM) -> str:
    """Load ``path`` as a mapping for ``site``; return its text (errors name the YAML key)."""
    from cartreg.ingest.mapping import load_mapping

    mapping = load_mapping(path, cdm)
    if mapping.site_id != site:
        raise InputError(
            f"the mapping is for site {mapping.site_id}, not {site}",
            where=str(path),
            hint="check the mapping's site_id or the SITE argument",
        )
    return path.read_text(encoding="utf-8")


def register_mapping(
    registry: Registry, site: str, path: Path | str, *, cdm: CDM, registered_by: str
) -> SiteMapping:
    """Check and store ``path`` as the mapping of ``site`` (in the caller's write transaction)."""
    site = check_site_id(site)
    text = check_mapping(Path(path), site, cdm)
    entry = SiteMapping(
        site_id=site,
        registered_at=now_utc(),
        registered_by=registered_by,
        mapping_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        mapping_text=text,
    )
    registry.conn.execute(
        "INSERT INTO portal_site_mappings VALUES (?, ?, ?, ?, ?)",
        [site, entry.registered_at, registered_by, entry.mapping_sha256, text],
    )
    return entry


_LATEST = """
    SELECT site_id, registered_at, registered_by, mapping_sha256, mapping_text
    FROM portal_site_mappings
    {where}
    QUALIFY row_number() OVER (PARTITION BY site_id ORDER BY registered_at DESC) = 1
    ORDER BY site_id
"""


def site_mapping(registry: Registry, site: str) -> SiteMapping | None:
    """The mapping registered last for ``site``, or None."""
    rows = registry.conn.execute(_LATEST.format(where="WHERE site_id = ?"), [site]).fetchall()
    return SiteMapping(*rows[0]) if rows else None


def list_site_mappings(registry: Registry) -> list[SiteMapping]:
    return [SiteMapping(*r) for r in registry.conn.execute(_LATEST.format(where="")).fetchall()]
