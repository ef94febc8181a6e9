"""Merged datasets and analysis reports: what a statistician sees (coordinators too).

A statistician sees only merges that finished with pseudonymous keys; nothing of a site's
submissions, reports or queries.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from cartreg.portal import views
from cartreg.portal.app import Portal
from cartreg.portal.auth import Principal, portal_of, require
from cartreg.portal.routes.shared import progress_json
from cartreg.portal.security import document_csp, static_block_hashes

router = APIRouter()
Statistician = Annotated[Principal, Depends(require("statistician"))]
DataUser = Annotated[Principal, Depends(require("coordinator", "statistician"))]
Coordinator = Annotated[Principal, Depends(require("coordinator"))]


@router.get("/data")
def data_home(request: Request, who: Statistician) -> Response:
    portal = portal_of(request)
    with portal.read() as registry:
        rows = views.merges(registry, published_only=True)
    return portal.page(request, who, "data_home.html", merges=rows)


def _merge(portal: Portal, who: Principal, merge_id: int) -> dict[str, Any]:
    with portal.read() as registry:
        row = views.merge(registry, merge_id, published_only=who.role != "coordinator")
    if row is None:
        portal.denied(who, f"merge:{merge_id}")
        raise HTTPException(404, "no merged dataset with this id")
    return row


@router.get("/merges/{merge_id}")
def merge_page(request: Request, who: DataUser, merge_id: int) -> Response:
    portal = portal_of(request)
    row = _merge(portal, who, merge_id)
    folder = portal.config.merges_dir / str(merge_id)
    progress = portal.worker.progress("merge", merge_id)
    return portal.page(
        request,
        who,
        "merge.html",
        merge=row,
        progress=progress.snapshot() if progress else None,
        has_dataset=(folder / "dataset.zip").is_file(),
        has_analysis=(folder / "analysis" / "report.html").is_file(),
    )


@router.get("/merges/{merge_id}/progress")
def merge_progress(request: Request, who: Coordinator, merge_id: int) -> Response:
    portal = portal_of(request)
    row = _merge(portal, who, merge_id)
    return progress_json(portal.worker.progress("merge", merge_id), row["state"])


def _send(request: Request, who: Principal, merge_id: int, name: str, action: str) -> Response:
    """A file of a merge's folder, after the merge itself is checked as visible to ``who``."""
    portal = portal_of(request)
    _merge(portal, who, merge_id)
    path = portal.config.merges_dir / str(merge_id) / name
    if not path.is_file():
        raise HTTPException(404, "not available for this merge")
    portal.record(who, action, site_id=None, object=f"merge:{merge_id}")
    return FileResponse(
        path, media_type="application/zip", filename=f"cartreg-merge-{merge_id}-{name}"
    )


@router.get("/merges/{merge_id}/dataset.zip")
def dataset(request: Request, who: DataUser, merge_id: int) -> Response:
    return _send(request, who, merge_id, "dataset.zip", "dataset.download")


@router.get("/merges/{merge_id}/analysis.zip")
def analysis_files(request: Request, who: DataUser, merge_id: int) -> Response:
    return _send(request, who, merge_id, "analysis.zip", "analysis.download")


@cache
def _analysis_csp() -> str:
    from cartreg.analysis import report

    return document_csp(
        scripts=static_block_hashes(report._TEMPLATE, "script"),
        styles=static_block_hashes(report._TEMPLATE, "style"),
    )


@router.get("/merges/{merge_id}/analysis")
def analysis_report(request: Request, who: DataUser, merge_id: int) -> Response:
    portal = portal_of(request)
    _merge(portal, who, merge_id)
    path = portal.config.merges_dir / str(merge_id) / "analysis" / "report.html"
    if not path.is_file():
        raise HTTPException(404, "this merge has no analysis (no data cut was given)")
    portal.record(who, "analysis.view", site_id=None, object=f"merge:{merge_id}")
    return HTMLResponse(
        path.read_text(encoding="utf-8"), headers={"Content-Security-Policy": _analysis_csp()}
    )
