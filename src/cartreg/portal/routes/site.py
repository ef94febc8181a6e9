"""A site user's pages: their site's versions and uploads, and the upload form."""

from __future__ import annotations

import secrets
import shutil
from typing import Annotated

from fastapi import APIRouter, Depends, File, HTTPException, Request, UploadFile
from fastapi.responses import RedirectResponse, Response

from cartreg.portal import views
from cartreg.portal.app import UPLOAD_PATH
from cartreg.portal.auth import Principal, portal_of, require
from cartreg.portal.processing import record_upload, upload_folder, upload_job
from cartreg.portal.sites import site_mapping
from cartreg.portal.uploads import UploadRejected, allowed_types, receive_files, require_files

router = APIRouter()
SiteUser = Annotated[Principal, Depends(require("site"))]


def site_of(who: Principal) -> str:
    if who.site_id is None:  # users.add_user never makes one; refuse rather than show all
        raise HTTPException(403, "your account has no site")
    return who.site_id


@router.get("/site")
def site_home(request: Request, who: SiteUser) -> Response:
    portal = portal_of(request)
    site = site_of(who)
    with portal.read() as registry:
        mapping = site_mapping(registry, site)
        versions = views.site_versions(registry, site)
        recent = views.uploads(registry, site)
    expected = mapping.source_files(portal.cdm) if mapping else []
    return portal.page(
        request,
        who,
        "site_home.html",
        site=site,
        mapping=mapping,
        expected=expected,
        versions=versions,
        uploads=recent,
        accepted_types=allowed_types(),
        max_mb=portal.config.limits.upload_bytes >> 20,
    )


@router.post(UPLOAD_PATH)
def upload(request: Request, who: SiteUser, files: Annotated[list[UploadFile], File()]) -> Response:
    portal = portal_of(request)
    site = site_of(who)
    with portal.read() as registry:
        mapping = site_mapping(registry, site)
    if mapping is None:
        raise HTTPException(
            409, f"no mapping is registered for {site} yet; ask the coordinating centre"
        )
    staging = portal.config.work_dir / f"incoming-{secrets.token_hex(8)}"
    try:
        received = receive_files(
            ((f.filename, f.file) for f in files), staging / "input", portal.config.limits
        )
        require_files(received, mapping.source_files(portal.cdm))
    except UploadRejected as exc:
        shutil.rmtree(staging, ignore_errors=True)
        portal.record(who, "upload.rejected", outcome="denied", detail=exc.message[:300])
        raise HTTPException(413 if exc.too_large else 400, exc.one_line()) from None
    (staging / "mapping.yaml").write_text(mapping.mapping_text, encoding="utf-8")
    actor = portal.actor(who)
    listing = [{"name": f.name, "bytes": f.size} for f in received]
    upload_id = portal.writer.call(lambda registry: record_upload(registry, actor, site, listing))
    staging.rename(upload_folder(portal.config, upload_id))
    portal.worker.enqueue(
        "upload",
        upload_id,
        upload_job(
            portal.config,
            portal.readers,
            portal.writer,
            portal.cdm,
            upload_id=upload_id,
            site=site,
            actor=actor,
        ),
    )
    return RedirectResponse(f"/uploads/{upload_id}", status_code=303)
