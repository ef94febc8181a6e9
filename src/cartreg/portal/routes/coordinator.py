"""The coordinating centre's pages: every site's status, decisions, merges."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from cartreg.portal import views
from cartreg.portal.auth import Principal, portal_of, require
from cartreg.portal.processing import merge_job, record_merge
from cartreg.portal.routes.shared import optional_date
from cartreg.portal.sites import list_site_mappings
from cartreg.registry.store import Registry

router = APIRouter()
Coordinator = Annotated[Principal, Depends(require("coordinator"))]
# No CAR T patient was treated before this day (the first infusions for ALL were in trials).
EARLIEST_DATA_CUT = dt.date(2000, 1, 1)


@router.get("/coord")
def coordinator_home(request: Request, who: Coordinator) -> Response:
    portal = portal_of(request)
    with portal.read() as registry:
        versions = views.site_versions(registry)
        mappings = {m.site_id: m for m in list_site_mappings(registry)}
        sites = views.known_sites(registry)
        recent = views.uploads(registry, None)
    latest: dict[str, dict[str, Any]] = {}
    for row in versions:  # newest first per site
        latest.setdefault(row["site_id"], row)
    return portal.page(
        request,
        who,
        "coord_home.html",
        sites=sites,
        latest=latest,
        mappings=mappings,
        uploads=recent,
    )


@router.get("/coord/sites/{site_id}")
def coordinator_site(request: Request, who: Coordinator, site_id: str) -> Response:
    portal = portal_of(request)
    with portal.read() as registry:
        if site_id not in views.known_sites(registry):
            raise HTTPException(404, "no site with this id")
        versions = views.site_versions(registry, site_id)
        recent = views.uploads(registry, site_id)
        mapping = next((m for m in list_site_mappings(registry) if m.site_id == site_id), None)
    return portal.page(
        request,
        who,
        "coord_site.html",
        site=site_id,
        versions=versions,
        uploads=recent,
        mapping=mapping,
    )


@router.post("/submissions/{submission_id}/decision")
def decision(
    request: Request,
    who: Coordinator,
    submission_id: int,
    outcome: Annotated[Literal["accepted", "rejected"], Form()],
    reason: Annotated[str, Form(min_length=3, max_length=2000)],
) -> Response:
    from cartreg.registry.submit import decide

    portal = portal_of(request)
    with portal.read() as registry:
        row = views.submission(registry, submission_id, None)
    if row is None or row["version"] is None:
        raise HTTPException(404, "no stored version with this id")
    site, version = str(row["site_id"]), int(row["version"])

    def apply(registry: Registry) -> None:
        decide(registry, site=site, version=version, status=outcome, reason=reason, who=who.name)

    event = portal.event(
        who,
        f"decision.{'accept' if outcome == 'accepted' else 'reject'}",
        site_id=site,
        object=f"submission:{submission_id}",
        detail=f"version {version}",
    )
    portal.write(apply, audit=[event])
    return RedirectResponse(f"/submissions/{submission_id}", status_code=303)


@router.get("/coord/merges")
def merges_page(request: Request, who: Coordinator) -> Response:
    portal = portal_of(request)
    with portal.read() as registry:
        rows = views.merges(registry, published_only=False)
        accepted = views.accepted_sites(registry)
    why_not = None
    if portal.config.secret is None:
        why_not = (
            "the server has no consortium secret, so pseudonyms cannot be made: start "
            "`cartreg serve` with --secret-file or $CARTREG_SECRET"
        )
    elif not accepted:
        why_not = "no site has an accepted version yet"
    return portal.page(
        request,
        who,
        "merges.html",
        merges=rows,
        accepted=accepted,
        why_not=why_not,
        today=dt.date.today().isoformat(),
    )


@router.post("/coord/merges")
def start_merge(
    request: Request,
    who: Coordinator,
    data_cut: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    portal = portal_of(request)
    if portal.config.secret is None:
        raise HTTPException(409, "merges are disabled: the server has no consortium secret")
    # A data cut is a day data were complete up to: not in the future, nor before CAR T
    # (0001-01-01 was taken, and every patient fell after it).
    cut = optional_date(
        data_cut, "the data cut", earliest=EARLIEST_DATA_CUT, latest=dt.date.today()
    )
    actor = portal.actor(who)
    merge_id = portal.writer.call(lambda registry: record_merge(registry, actor, cut))
    portal.worker.enqueue(
        "merge",
        merge_id,
        merge_job(
            portal.config, portal.writer, portal.cdm, merge_id=merge_id, actor=actor, data_cut=cut
        ),
    )
    return RedirectResponse(f"/merges/{merge_id}", status_code=303)
