"""Pages a site user and a coordinator share: an upload's progress, a stored version, its
validation report and its diff. A site user's lookups carry their site: another site's ids are
not found (404), exactly like ids that do not exist."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import cache
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from cartreg.errors import InputError
from cartreg.portal import views
from cartreg.portal.app import Portal
from cartreg.portal.auth import Principal, portal_of, require
from cartreg.portal.jobs import Progress
from cartreg.portal.security import document_csp, static_block_hashes
from cartreg.registry.store import Registry

router = APIRouter()
SiteOrCoordinator = Annotated[Principal, Depends(require("site", "coordinator"))]


def scope(who: Principal) -> str | None:
    """The site a lookup is limited to: the user's own for a site user, none for coordinators."""
    return who.site_id if who.role == "site" else None


def optional_date(
    text: str,
    what: str,
    *,
    earliest: dt.date | None = None,
    latest: dt.date | None = None,
) -> dt.date | None:
    """A form's optional YYYY-MM-DD field, within [``earliest``, ``latest``] when given."""
    if not text.strip():
        return None
    try:
        day = dt.date.fromisoformat(text.strip())
    except ValueError:
        raise HTTPException(400, f"{what} must be a date (YYYY-MM-DD)") from None
    if earliest is not None and day < earliest:
        raise HTTPException(400, f"{what} must be on or after {earliest.isoformat()}")
    if latest is not None and day > latest:
        raise HTTPException(400, f"{what} must be on or before {latest.isoformat()}")
    return day


def progress_json(progress: Progress | None, state: str, **extra: Any) -> JSONResponse:
    """A job's progress; ``state`` is its row's state (``queued`` until it finished)."""
    snapshot = (
        progress.snapshot()
        if progress
        else {"stage": state, "finished": True, "failed": state == "failed", "steps": []}
    )
    snapshot["finished"] = bool(snapshot["finished"]) and state != "queued"
    return JSONResponse({**snapshot, **extra})


def not_found(portal: Portal, who: Principal, what: str) -> HTTPException:
    portal.denied(who, what)
    return HTTPException(404, f"no {what.split(':')[0]} with this id")


Lookup = Callable[[Registry, int, str | None], dict[str, Any] | None]


def scoped(portal: Portal, who: Principal, kind: str, key: int, lookup: Lookup) -> dict[str, Any]:
    """The object ``kind:key`` as ``who`` may see it (a site user: of their site), else 404."""
    with portal.read() as registry:
        row = lookup(registry, key, scope(who))
    if row is None:
        raise not_found(portal, who, f"{kind}:{key}")
    return row


def _upload(portal: Portal, who: Principal, upload_id: int) -> dict[str, Any]:
    return scoped(portal, who, "upload", upload_id, views.upload)


@router.get("/uploads/{upload_id}")
def upload_page(request: Request, who: SiteOrCoordinator, upload_id: int) -> Response:
    portal = portal_of(request)
    row = _upload(portal, who, upload_id)
    progress = portal.worker.progress("upload", upload_id)
    return portal.page(
        request,
        who,
        "upload.html",
        upload=row,
        progress=progress.snapshot() if progress else None,
    )


@router.get("/uploads/{upload_id}/progress")
def upload_progress(request: Request, who: SiteOrCoordinator, upload_id: int) -> Response:
    portal = portal_of(request)
    row = _upload(portal, who, upload_id)
    return progress_json(
        portal.worker.progress("upload", upload_id),
        row["state"],
        submission_id=row["submission_id"],
    )


def _submission(portal: Portal, who: Principal, submission_id: int) -> dict[str, Any]:
    return scoped(portal, who, "submission", submission_id, views.submission)


@router.get("/submissions/{submission_id}")
def submission_page(request: Request, who: SiteOrCoordinator, submission_id: int) -> Response:
    portal = portal_of(request)
    row = _submission(portal, who, submission_id)
    with portal.read() as registry:
        files = views.submission_files(registry, submission_id)
        tables = views.submission_tables(registry, submission_id)
        findings, total = views.submission_findings(registry, submission_id)
        history = views.decisions(registry, submission_id)
        report = views.has_report(registry, submission_id)
    portal.record(
        who, "submission.view", site_id=row["site_id"], object=f"submission:{submission_id}"
    )
    return portal.page(
        request,
        who,
        "submission.html",
        sub=row,
        files=files,
        tables=tables,
        findings=findings,
        total_findings=total,
        decisions=history,
        has_report=report,
    )


@cache
def _report_csp() -> str:
    """The policy of a stored validation report: its template's own script and styles."""
    from importlib.resources import files

    source = files("cartreg.reports").joinpath("templates/report.html.j2").read_text("utf-8")
    return document_csp(
        scripts=static_block_hashes(source, "script"),
        styles=static_block_hashes(source, "style"),
    )


@router.get("/submissions/{submission_id}/report")
def report(request: Request, who: SiteOrCoordinator, submission_id: int) -> Response:
    portal = portal_of(request)
    row = _submission(portal, who, submission_id)
    with portal.read() as registry:
        html = views.report_html(registry, submission_id)
    if html is None:
        raise HTTPException(
            404,
            "this version was stored with the command line, without its report; its findings "
            "are on the version's page",
        )
    portal.record(who, "report.view", site_id=row["site_id"], object=f"submission:{submission_id}")
    return HTMLResponse(html, headers={"Content-Security-Policy": _report_csp()})


@router.get("/submissions/{submission_id}/diff")
def diff(request: Request, who: SiteOrCoordinator, submission_id: int) -> Response:
    from cartreg.registry.diff import diff_versions

    portal = portal_of(request)
    row = _submission(portal, who, submission_id)
    if row["version"] is None:
        raise HTTPException(404, "a resubmission of identical files stored nothing to compare")
    try:
        with portal.read() as registry:
            report = diff_versions(
                registry, row["site_id"], to_version=int(row["version"]), cdm=portal.cdm
            ).to_dict()
    except InputError as exc:
        raise HTTPException(404, exc.message) from None
    portal.record(who, "diff.view", site_id=row["site_id"], object=f"submission:{submission_id}")
    return portal.page(request, who, "diff.html", sub=row, d=report, limit=500)
