"""Background jobs of the portal: process an upload (ingest, validate, store) and merge.

Both call the same library functions as the command line (``cartreg registry submit`` and
``cartreg registry merge``, ``cartreg analyze``); the portal adds only where files live, the
progress shown, and the rows of its own tables. An upload's files and its ingest output are
deleted when the job ends: like ``registry submit``, the portal keeps checksums, counts,
harmonized rows and findings, never a site's source rows (they may hold identifiers).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import secrets
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cartreg.errors import CartregError
from cartreg.portal.audit import AuditEvent, append_events
from cartreg.portal.config import PortalConfig
from cartreg.portal.jobs import Progress, Readers, Writer
from cartreg.registry.store import Registry, now_utc, transaction

if TYPE_CHECKING:
    from cartreg.cdm import CDM
    from cartreg.registry.submit import SubmitResult

log = logging.getLogger("cartreg.portal")


@dataclass(frozen=True)
class Actor:
    """Who a job runs for (recorded in the audit log and as the submitter)."""

    name: str
    role: str
    site_id: str | None
    client: str | None = None

    def event(self, action: str, **fields: Any) -> AuditEvent:
        return AuditEvent(
            actor=self.name,
            role=self.role,
            site_id=fields.pop("site_id", self.site_id),
            client=self.client,
            action=action,
            **fields,
        )


def upload_folder(config: PortalConfig, upload_id: int) -> Path:
    return config.work_dir / f"upload-{upload_id}"


def next_id(registry: Registry, table: str, column: str) -> int:
    return int(registry.scalar(f"SELECT coalesce(max({column}), 0) + 1 FROM {table}"))


def record_upload(registry: Registry, actor: Actor, site: str, files: list[dict[str, Any]]) -> int:
    """A new row in ``portal_uploads`` (state ``queued``) and its audit row; its id."""
    with transaction(registry):
        upload_id = next_id(registry, "portal_uploads", "upload_id")
        registry.conn.execute(
            "INSERT INTO portal_uploads (upload_id, site_id, user_name, created_at, state, "
            "files_json) VALUES (?, ?, ?, ?, 'queued', ?)",
            [upload_id, site, actor.name, now_utc(), json.dumps(files)],
        )
        names = ", ".join(f["name"] for f in files)
        append_events(
            registry,
            [
                actor.event(
                    "upload.received",
                    site_id=site,
                    object=f"upload:{upload_id}",
                    detail=f"{len(files)} file(s): {names}"[:500],
                )
            ],
        )
    return upload_id


def public_message(exc: BaseException, *, hide: dict[str, str]) -> str:
    """The one-line error a user sees, with the server's folders replaced by ``hide``'s names."""
    text = exc.one_line() if isinstance(exc, CartregError) else str(exc)
    for path, shown in sorted(hide.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(path, shown)
    return text


def internal_error(what: str, exc: BaseException) -> str:
    """Log a bug without its message (it may quote data) and return what the user is told."""
    reference = secrets.token_hex(4)
    if os.environ.get("CARTREG_DEBUG"):
        log.exception("%s: internal error (reference %s)", what, reference)
    else:
        log.error("%s: internal error %s (reference %s)", what, type(exc).__name__, reference)
    return (
        f"internal error in cartreg (reference {reference}); "
        "the coordinator can find it in the server log"
    )


def finish_row(
    registry: Registry,
    table: str,
    key: tuple[str, int],
    *,
    state: str,
    message: str,
    event: AuditEvent,
    **columns: Any,
) -> None:
    """Set a job's row (``portal_uploads``/``portal_merges``) to its final state, with its
    audit row, in one transaction."""
    values = {"state": state, "finished_at": now_utc(), "message": message, **columns}
    with transaction(registry):
        registry.conn.execute(
            f"UPDATE {table} SET {', '.join(f'{c} = ?' for c in values)} WHERE {key[0]} = ?",
            [*values.values(), key[1]],
        )
        append_events(registry, [event])


def run_guarded(
    progress: Progress,
    what: str,
    work: Callable[[], str],
    *,
    hide: dict[str, str],
    record_failure: Callable[[str], None],
) -> None:
    """Run a job's ``work`` (it returns the outcome shown); any failure becomes the one-line
    message the user sees (internal errors a reference), recorded, and the job still ends."""
    try:
        progress.finish(work())
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        message = (
            public_message(exc, hide=hide)
            if isinstance(exc, CartregError)
            else internal_error(what, exc)
        )
        record_failure(message)
        progress.finish(message, failed=True)


def _outcome(result: SubmitResult) -> str:
    if result.is_noop:
        return (
            f"the files and mapping are identical to version {result.noop_of_version}: "
            "recorded, nothing new stored"
        )
    counts = f"{result.n_errors} errors, {result.n_warnings} warnings"
    changes = ", ".join(
        f"{n} {what.replace('_', ' ')}" for what, n in result.query_changes.items() if n
    )
    queries = f"; queries: {changes}" if changes else ""
    if result.status == "rejected":
        return (
            f"stored as version {result.version}: rejected ({counts}{queries}). Fix the errors "
            "and upload again; a coordinator may also accept it with a reason"
        )
    return f"stored as version {result.version}: accepted ({counts}{queries})"


def upload_job(
    config: PortalConfig,
    readers: Readers,
    writer: Writer,
    cdm: CDM,
    *,
    upload_id: int,
    site: str,
    actor: Actor,
) -> Callable[[Progress], None]:
    """The job that ingests, validates and stores an upload received in its folder.

    The folder holds ``input/`` (the checked files) and ``mapping.yaml`` (the site's registered
    mapping at the time of the upload).
    """

    def run(progress: Progress) -> None:
        from cartreg.ingest import ingest_submission
        from cartreg.queries.submission import report_waivers
        from cartreg.registry.merge import rule_catalog_version
        from cartreg.registry.submit import submit_output, validate_for_submit
        from cartreg.reports.html import render_html

        work_dir = upload_folder(config, upload_id)
        inputs, out, mapping = work_dir / "input", work_dir / "out", work_dir / "mapping.yaml"
        hide = {
            f"{inputs}/": "",
            str(inputs): "upload",
            str(mapping): f"the mapping of {site}",
            str(work_dir): "upload",
            str(config.data_dir): "portal",
        }

        def work() -> str:
            progress.note("ingesting", "reading the files with the site's mapping")
            ingested = ingest_submission(
                inputs,
                mapping,
                out,
                cdm=cdm,
                progress=lambda text: progress.note("ingesting", text),
            )
            progress.note("validating", "checking the data model and the data-quality rules")
            when = now_utc()
            # The site's waived queries hide their findings in the report: a snapshot taken
            # under a short read lock; the validation itself holds no lock.
            with readers.read() as registry:
                waive = report_waivers(
                    registry, site=site, cdm=cdm, when=when, out_dir=out, mapping_path=mapping
                )
            report, findings = validate_for_submit(
                out, cdm=cdm, when=when, waive=waive, ingest_findings=ingested.findings
            )
            html = render_html(report)
            progress.note("storing", "storing the version and updating the queries")

            def store(registry: Registry) -> str:
                result = submit_output(
                    registry,
                    out,
                    site=site,
                    findings=findings,
                    rule_version=rule_catalog_version(),
                    mapping_path=mapping,
                    who=actor.name,
                    cdm=cdm,
                )
                if not result.is_noop:
                    with transaction(registry):
                        registry.conn.execute(
                            "INSERT INTO portal_reports VALUES (?, ?, ?)",
                            [result.submission_id, now_utc(), html],
                        )
                message = _outcome(result)
                event = actor.event(
                    "upload.stored",
                    site_id=site,
                    object=f"upload:{upload_id}",
                    detail=f"submission {result.submission_id}: {result.status}",
                )
                finish_row(
                    registry,
                    "portal_uploads",
                    ("upload_id", upload_id),
                    state="stored",
                    message=message,
                    event=event,
                    submission_id=result.submission_id,
                )
                return message

            return writer.call(store)

        def record_failure(message: str) -> None:
            event = actor.event(
                "upload.failed", site_id=site, object=f"upload:{upload_id}", outcome="failed"
            )
            writer.call(
                lambda registry: finish_row(
                    registry,
                    "portal_uploads",
                    ("upload_id", upload_id),
                    state="failed",
                    message=message,
                    event=event,
                )
            )

        try:
            run_guarded(
                progress, f"upload {upload_id}", work, hide=hide, record_failure=record_failure
            )
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)

    return run


def zip_folder(folder: Path, target: Path) -> None:
    """``folder``'s files into ``target`` (written beside it, then renamed)."""
    partial = target.with_name(f".{target.name}.partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            archive.write(path, path.relative_to(folder).as_posix())
    partial.replace(target)


def record_merge(registry: Registry, actor: Actor, data_cut: dt.date | None) -> int:
    with transaction(registry):
        merge_id = next_id(registry, "portal_merges", "merge_id")
        registry.conn.execute(
            "INSERT INTO portal_merges (merge_id, created_at, created_by, data_cut, state) "
            "VALUES (?, ?, ?, ?, 'queued')",
            [merge_id, now_utc(), actor.name, data_cut],
        )
        append_events(
            registry,
            [
                actor.event(
                    "merge.start", object=f"merge:{merge_id}", detail=f"data cut {data_cut or '-'}"
                )
            ],
        )
    return merge_id


def merge_summary(manifest: dict[str, Any]) -> dict[str, Any]:
    """What the merge page shows (no patient keys)."""
    return {
        "sites": [
            {"site_id": s["site_id"], "version": s["version"]} for s in manifest.get("sites", [])
        ],
        "tables": {
            name: rec["rows_out"] for name, rec in (manifest.get("reconciliation") or {}).items()
        },
        "duplicates": (manifest.get("duplicates") or {}).get("candidates", 0),
        "findings": manifest.get("findings", {}),
        "pseudonymized": bool((manifest.get("patient_keys") or {}).get("pseudonymized")),
    }


def merge_job(
    config: PortalConfig,
    writer: Writer,
    cdm: CDM,
    *,
    merge_id: int,
    actor: Actor,
    data_cut: dt.date | None,
) -> Callable[[Progress], None]:
    """The job that merges the latest accepted versions and, with a data cut, analyses them."""

    def run(progress: Progress) -> None:
        from cartreg.registry.merge import merge_registry

        folder = config.merges_dir / str(merge_id)

        def work() -> str:
            if config.secret is None:  # the route refuses too; never merge without pseudonyms
                raise CartregError("the server has no consortium secret: merges are disabled")
            folder.mkdir(parents=True, exist_ok=True)
            progress.note("merging", "merging the latest accepted version of each site")
            result = writer.call(
                lambda registry: merge_registry(
                    registry, folder / "dataset", secret=config.secret, cdm=cdm, who=actor.name
                )
            )
            summary = merge_summary(result.manifest)
            zip_folder(folder / "dataset", folder / "dataset.zip")
            if data_cut is not None:
                from cartreg.analysis.run import analyze

                progress.note("analysing", f"analysing the merged data at the data cut {data_cut}")
                analyze(folder / "dataset", data_cut, folder / "analysis", cdm=cdm)
                zip_folder(folder / "analysis", folder / "analysis.zip")
            message = "merged " + ", ".join(
                f"{s['site_id']} v{s['version']}" for s in summary["sites"]
            )
            writer.call(
                lambda registry: finish_row(
                    registry,
                    "portal_merges",
                    ("merge_id", merge_id),
                    state="done",
                    message=message,
                    event=actor.event("merge.done", object=f"merge:{merge_id}"),
                    pseudonymized=summary["pseudonymized"],
                    summary_json=json.dumps(summary),
                )
            )
            return message

        def record_failure(message: str) -> None:
            event = actor.event("merge.failed", object=f"merge:{merge_id}", outcome="failed")
            writer.call(
                lambda registry: finish_row(
                    registry,
                    "portal_merges",
                    ("merge_id", merge_id),
                    state="failed",
                    message=message,
                    event=event,
                )
            )
            shutil.rmtree(folder, ignore_errors=True)

        run_guarded(
            progress,
            f"merge {merge_id}",
            work,
            hide={str(config.data_dir): "portal"},
            record_failure=record_failure,
        )

    return run


def abandon_interrupted(registry: Registry, config: PortalConfig) -> None:
    """At start-up: uploads and merges a previous server left unfinished are marked failed."""
    message = "interrupted: the server stopped while this was being processed; please try again"
    with transaction(registry):
        for table in ("portal_uploads", "portal_merges"):
            registry.conn.execute(
                f"UPDATE {table} SET state = 'failed', finished_at = ?, message = ? "
                "WHERE state = 'queued'",
                [now_utc(), message],
            )
    shutil.rmtree(config.work_dir, ignore_errors=True)
