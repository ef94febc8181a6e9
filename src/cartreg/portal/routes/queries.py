"""Queries in the portal: a site answers its own (one by one or with the workbook), the
coordinating centre triages all of them (close as waived or unobtainable, reopen); scorecards.

The same library calls as ``cartreg queries`` (``record_answers``, ``close_queries``,
``reopen_queries``, ``write_workbook``/``read_workbook``, ``scorecard``), through the writer.
"""

from __future__ import annotations

import datetime as dt
import secrets
import shutil
from functools import cache
from typing import Annotated, Any, Literal

import polars as pl
from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.background import BackgroundTask

from cartreg.errors import CartregError
from cartreg.portal.app import WORKBOOK_PATH, Portal
from cartreg.portal.auth import Principal, portal_of, require
from cartreg.portal.processing import public_message
from cartreg.portal.routes.shared import not_found, optional_date, scope
from cartreg.portal.routes.site import site_of
from cartreg.portal.security import document_csp, static_block_hashes
from cartreg.portal.views import known_sites
from cartreg.queries.lifecycle import (
    RESPONSES,
    STATES,
    close_queries,
    history,
    mask_identifiers,
    record_answers,
    reopen_queries,
    site_queries,
)
from cartreg.queries.submission import identifier_columns
from cartreg.registry.store import Registry, now_utc

router = APIRouter()
SiteOrCoordinator = Annotated[Principal, Depends(require("site", "coordinator"))]
SiteUser = Annotated[Principal, Depends(require("site"))]
Coordinator = Annotated[Principal, Depends(require("coordinator"))]


def _queries(portal: Portal, registry: Registry, site: str | None) -> pl.DataFrame:
    return mask_identifiers(site_queries(registry, site), identifier_columns(portal.cdm))


def _query(portal: Portal, who: Principal, query_id: str) -> dict[str, Any]:
    with portal.read() as registry:
        rows = _queries(portal, registry, scope(who)).filter(pl.col("query_id") == query_id)
    if rows.height == 0:
        raise not_found(portal, who, f"query:{query_id}")
    return rows.row(0, named=True)


@router.get("/queries")
def query_list(
    request: Request,
    who: SiteOrCoordinator,
    state: Annotated[Literal["open", "answered", "closed", "all"], Query()] = "open",
    site: Annotated[str | None, Query(max_length=16)] = None,
) -> Response:
    portal = portal_of(request)
    with portal.read() as registry:
        wanted = scope(who) or site or None
        if wanted is not None and wanted not in known_sites(registry):
            raise not_found(portal, who, f"site:{wanted}")
        rows = _queries(portal, registry, wanted)
        sites = known_sites(registry) if who.role == "coordinator" else []
    counts = dict(rows.group_by("state").len().iter_rows()) if rows.height else {}
    shown = rows if state == "all" else rows.filter(pl.col("state") == state)
    return portal.page(
        request,
        who,
        "queries.html",
        queries=shown.sort("query_id").head(1000).to_dicts(),
        total=shown.height,
        counts={s: int(counts.get(s, 0)) for s in STATES},
        state=state,
        site=wanted,
        sites=sites,
    )


@router.get("/queries/{query_id}")
def query_page(request: Request, who: SiteOrCoordinator, query_id: str) -> Response:
    portal = portal_of(request)
    row = _query(portal, who, query_id)
    with portal.read() as registry:
        events = history(registry, [query_id]).to_dicts()
    portal.record(who, "query.view", site_id=row["site_id"], object=f"query:{query_id}")
    return portal.page(
        request,
        who,
        "query.html",
        q=row,
        events=events,
        responses=RESPONSES,
        today=dt.date.today().isoformat(),
    )


@router.post("/queries/{query_id}/response")
def respond(
    request: Request,
    who: SiteUser,
    query_id: str,
    response: Annotated[Literal["corrected", "confirmed", "unobtainable", ""], Form()] = "",
    comment: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    portal = portal_of(request)
    row = _query(portal, who, query_id)
    if not response and not comment.strip():
        raise HTTPException(400, "choose an answer or write a comment")
    answers = pl.DataFrame(
        {
            "query_id": [query_id],
            "response": [response or None],
            "comment": [comment.strip() or None],
        },
        schema={"query_id": pl.String, "response": pl.String, "comment": pl.String},
    )
    portal.writer.call(
        lambda registry: record_answers(
            registry, answers, actor=who.name, when=now_utc(), source="portal"
        ),
        audit=[
            portal.event(
                who,
                "query.respond",
                object=f"query:{query_id}",
                detail=response or "comment",
                site_id=row["site_id"],
            )
        ],
    )
    return RedirectResponse(f"/queries/{query_id}", status_code=303)


@router.post("/queries/{query_id}/close")
def close(
    request: Request,
    who: Coordinator,
    query_id: str,
    resolution: Annotated[Literal["waived", "unobtainable"], Form()],
    reason: Annotated[str, Form(min_length=3, max_length=2000)],
    expires: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    portal = portal_of(request)
    row = _query(portal, who, query_id)
    # A waiver that has already expired would reopen its query at once.
    until = optional_date(expires, "the expiry", earliest=dt.date.today() + dt.timedelta(days=1))
    action = "query.waive" if resolution == "waived" else "query.close"
    portal.write(
        lambda registry: close_queries(
            registry,
            [query_id],
            resolution=resolution,
            reason=reason,
            actor=who.name,
            when=now_utc(),
            expires=until,
        ),
        audit=[portal.event(who, action, object=f"query:{query_id}", site_id=row["site_id"])],
    )
    return RedirectResponse(f"/queries/{query_id}", status_code=303)


@router.post("/queries/{query_id}/reopen")
def reopen(
    request: Request,
    who: Coordinator,
    query_id: str,
    reason: Annotated[str, Form(min_length=3, max_length=2000)],
) -> Response:
    portal = portal_of(request)
    row = _query(portal, who, query_id)
    portal.write(
        lambda registry: reopen_queries(
            registry, [query_id], reason=reason, actor=who.name, when=now_utc()
        ),
        audit=[
            portal.event(who, "query.reopen", object=f"query:{query_id}", site_id=row["site_id"])
        ],
    )
    return RedirectResponse(f"/queries/{query_id}", status_code=303)


@router.get(WORKBOOK_PATH)
def workbook_download(request: Request, who: SiteUser) -> Response:
    from cartreg.queries.workbook import all_guidance, write_workbook

    portal = portal_of(request)
    site = site_of(who)
    folder = portal.config.work_dir / f"workbook-{secrets.token_hex(8)}"
    path = folder / f"{site}-queries.xlsx"
    try:
        with portal.read() as registry:
            count = write_workbook(
                registry,
                site,
                path,
                guidance=all_guidance(),
                identifiers=identifier_columns(portal.cdm),
                when=now_utc(),
            )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    portal.record(who, "workbook.download", object=f"site:{site}", detail=f"{count} open queries")
    return FileResponse(
        path,
        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        filename=path.name,
        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
    )


@router.post(WORKBOOK_PATH)
def workbook_upload(
    request: Request, who: SiteUser, workbook: Annotated[UploadFile, File()]
) -> Response:
    from cartreg.queries.workbook import check_workbook, read_workbook

    portal = portal_of(request)
    site = site_of(who)
    folder = portal.config.work_dir / f"answers-{secrets.token_hex(8)}"
    folder.mkdir(parents=True)
    path = folder / "answers.xlsx"
    try:
        with path.open("wb") as out:
            shutil.copyfileobj(workbook.file, out, 1 << 20)
        with path.open("rb") as head:
            if head.read(4) != b"PK\x03\x04":
                raise HTTPException(
                    400, "this is not an XLSX workbook; send back the file the portal gave you"
                )
        try:
            answers = read_workbook(path)

            def apply(registry: Registry) -> dict[str, int]:
                check_workbook(registry, answers, "the workbook", site=site)
                return record_answers(
                    registry, answers.rows, actor=who.name, when=now_utc(), source="workbook"
                )

            counts = portal.writer.call(
                apply,
                audit=[
                    portal.event(
                        who,
                        "workbook.upload",
                        object=f"site:{site}",
                        detail=f"{answers.rows.height} answered rows",
                    )
                ],
            )
        except CartregError as exc:
            message = public_message(exc, hide={str(path): "the workbook", str(folder): "upload"})
            portal.record(who, "workbook.upload", object=f"site:{site}", outcome="failed")
            raise HTTPException(400, message) from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return portal.page(request, who, "workbook_done.html", counts=counts, site=site)


@cache
def _scorecard_csp() -> str:
    from importlib.resources import files

    source = files("cartreg.queries").joinpath("templates/scorecard.html.j2").read_text("utf-8")
    return document_csp(
        scripts=static_block_hashes(source, "script"), styles=static_block_hashes(source, "style")
    )


def _scorecard(portal: Portal, site: str | None) -> HTMLResponse:
    from cartreg.queries.scorecard import render_html, scorecard

    with portal.read() as registry:
        card = scorecard(registry, as_of=now_utc(), registry_name="")
    if site is not None:  # a site's own card, nothing of the other sites
        card["sites"] = [s for s in card["sites"] if s["site_id"] == site]
    return HTMLResponse(render_html(card), headers={"Content-Security-Policy": _scorecard_csp()})


@router.get("/site/scorecard")
def site_scorecard(request: Request, who: SiteUser) -> Response:
    portal = portal_of(request)
    site = site_of(who)
    portal.record(who, "scorecard.view", object=f"site:{site}")
    return _scorecard(portal, site)


@router.get("/coord/scorecard")
def consortium_scorecard(request: Request, who: Coordinator) -> Response:
    portal = portal_of(request)
    portal.record(who, "scorecard.view", object="consortium")
    return _scorecard(portal, None)
