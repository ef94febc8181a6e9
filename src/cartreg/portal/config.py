"""Server configuration of the portal: where the registry and the portal's files are, limits.

Nothing here comes from a request. The consortium secret in particular is read from the
server's configuration (``--secret-file`` or ``$CARTREG_SECRET``) and never from a form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

MB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Upload limits. A request over ``upload_bytes`` is refused while it streams in."""

    upload_bytes: int = 200 * MB  # one upload request: all files together
    form_bytes: int = 256 * 1024  # any other form
    workbook_bytes: int = 20 * MB  # a query workbook
    files: int = 100  # files in one upload, or entries in one zip
    unzipped_bytes: int = 2048 * MB  # all files of a zip, once unpacked
    zip_ratio: int = 200  # unpacked / packed size of one zip entry (a zip bomb is ~1000:1)


@dataclass(frozen=True)
class LoginPolicy:
    """Sign-in rate limits and session lifetimes."""

    failures_per_user: int = 5  # failed sign-ins of one user name within the window
    failures_per_client: int = 20  # failed sign-ins from one address within the window
    window_seconds: float = 15 * 60
    session_hours: float = 12.0  # absolute lifetime of a session
    idle_minutes: float = 60.0  # a session unused this long ends


@dataclass(frozen=True)
class PortalConfig:
    registry: Path
    data_dir: Path  # uploads being processed, merged datasets and analyses
    secret: bytes | None = None  # the consortium secret (pseudonyms); None: no merges
    limits: Limits = field(default_factory=Limits)
    login: LoginPolicy = field(default_factory=LoginPolicy)
    lock_timeout: float = 15.0  # seconds a page waits for the registry before saying "busy"
    audit_flush_seconds: float = 1.0  # views are written to the audit log at most this late

    @classmethod
    def for_registry(
        cls, registry: Path | str, *, data_dir: Path | str | None = None, **kwargs: object
    ) -> PortalConfig:
        """Defaults: the portal's files in ``<registry>.portal/`` beside the registry."""
        registry = Path(registry)
        folder = (
            Path(data_dir)
            if data_dir is not None
            else registry.with_name(registry.name + ".portal")
        )
        return cls(registry=registry, data_dir=folder, **kwargs)  # type: ignore[arg-type]

    @property
    def work_dir(self) -> Path:
        return self.data_dir / "work"

    @property
    def merges_dir(self) -> Path:
        return self.data_dir / "merges"
