"""``cartreg registry``: the consortium registry (init, submit, status, diff, accept, merge,
the review of duplicate pairs, backup, restore, verify)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from cartreg.cli.common import cdm_from_context, console, exit_code_for, fail_on_option
from cartreg.cli.common import lock_option as _lock_option
from cartreg.cli.common import registry_option as _registry_option
from cartreg.cli.validate import report_output_options

F = TypeVar("F", bound=Callable[..., Any])

SHOWN_PAIRS = 20  # duplicate pairs printed by `registry merge`; the CSV has all of them


@click.group()
def registry() -> None:
    """Consortium registry: submit, status, diff, merge, review duplicate pairs, backup.

    Lifecycle: submit (ingest + validate + store as a new version) -> review (status, diff) ->
    accept/reject -> merge (latest accepted version of each site) -> review and link the
    duplicate pairs it lists (kept for every later merge). `backup` and `restore` make and put
    back verified copies; `verify` reads the whole registry.
    """


@registry.command("init")
@click.argument(
    "path", type=click.Path(dir_okay=False, path_type=Path), default=Path("registry.duckdb")
)
@_lock_option()
def init(path: Path, lock_timeout: float) -> None:
    """Create a registry file (or upgrade an older one in place)."""
    from cartreg.registry.store import STORE_SCHEMA_VERSION, init_registry

    applied = init_registry(path, lock_timeout=lock_timeout)
    if applied:
        console().print(
            f"{path}: store schema version {STORE_SCHEMA_VERSION} "
            f"(applied migrations {', '.join(str(v) for v in applied)})"
        )
    else:
        console().print(f"{path}: already at store schema version {STORE_SCHEMA_VERSION}")


def _report_submit(result: Any, fmt: str = "text", report_path: Path | None = None) -> None:
    out = console()
    if result.report is not None and (report_path is not None or fmt != "text"):
        from cartreg.cli.validate import emit

        emit(result.report, fmt, report_path)
    if result.is_noop:
        out.print(
            f"{result.site_id}: inputs identical to version {result.noop_of_version}; "
            "recorded as a no-op, nothing stored"
        )
        return
    style = "green" if result.status == "accepted" else "bold red"
    rows = ", ".join(f"{t} {n}" for t, n in result.rows.items() if n)
    out.print(
        f"{result.site_id}: stored version {result.version} as [{style}]{result.status}[/] "
        f"({result.n_errors} errors, {result.n_warnings} warnings; rows: {rows or 'none'})"
    )
    changes = {k: v for k, v in result.query_changes.items() if v}
    if changes:
        words = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in changes.items())
        out.print(f"queries: {words} (see `cartreg queries list --site {result.site_id}`)")
    if result.patients_lost:
        out.print(
            f"{result.patients_lost} patient(s) of accepted version {result.lost_from_version} "
            "are missing from this submission (REG-PATIENTS-LOST findings; "
            f"`cartreg registry diff --site {result.site_id}` lists them)"
        )
    if result.status == "rejected":
        out.print(
            "rejected versions are kept but never merged; fix the data and resubmit, or run "
            f"`cartreg registry accept --site {result.site_id} --version {result.version} "
            '--reason "..."`'
        )


def _fail_on(default: str = "error") -> Callable[[F], F]:
    decorator: Callable[[F], F] = fail_on_option(default)
    return decorator


def _submit_options(func: F) -> F:
    for decorator in reversed(
        [
            click.option("--site", required=True, help="Site id, e.g. REDCAP_A."),
            click.option(
                "--mapping",
                "mapping_path",
                required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                help="The site's mapping YAML.",
            ),
            _registry_option(),
            _fail_on(),
            click.option(
                "--accept-reason",
                default=None,
                help="Accept the version despite findings at --fail-on, with this reason.",
            ),
            click.option("--who", default=None, help="Submitter recorded (default: login name)."),
            _lock_option(),
            *report_output_options(),
        ]
    ):
        func = decorator(func)
    return func


def _waiver_file(path: Path | None) -> Any:
    from cartreg.rules.waivers import load_waivers

    return load_waivers(path) if path is not None else ()


@registry.command("submit")
@click.argument("submission_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_submit_options
@click.option(
    "--keep-output",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also keep the ingest output folder here.",
)
@click.pass_context
def submit(
    ctx: click.Context,
    submission_dir: Path,
    site: str,
    mapping_path: Path,
    registry_path: Path,
    fail_on: str,
    accept_reason: str | None,
    who: str | None,
    lock_timeout: float,
    waivers: Path | None,
    report_path: Path | None,
    fmt: str,
    keep_output: Path | None,
) -> None:
    """Ingest, validate and store SUBMISSION_DIR as the site's next version."""
    from cartreg.registry.submit import submit_submission

    result = submit_submission(
        registry_path,
        submission_dir,
        site=site.upper(),
        mapping_path=mapping_path,
        fail_on=fail_on,
        accept_reason=accept_reason,
        who=who,
        keep_output=keep_output,
        cdm=cdm_from_context(ctx),
        lock_timeout=lock_timeout,
        waivers=_waiver_file(waivers),
    )
    _report_submit(result, fmt, report_path)
    ctx.exit(1 if result.status == "rejected" else 0)


@registry.command("store")
@click.argument("out_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_submit_options
@click.pass_context
def store(
    ctx: click.Context,
    out_dir: Path,
    site: str,
    mapping_path: Path,
    registry_path: Path,
    fail_on: str,
    accept_reason: str | None,
    who: str | None,
    lock_timeout: float,
    waivers: Path | None,
    report_path: Path | None,
    fmt: str,
) -> None:
    """Validate and store an existing ingest output folder (from `cartreg ingest`)."""
    from cartreg.registry.submit import load_output_findings, validate_and_submit

    result = validate_and_submit(
        registry_path,
        out_dir,
        site=site.upper(),
        mapping_path=mapping_path,
        ingest_findings=load_output_findings(out_dir),
        fail_on=fail_on,
        accept_reason=accept_reason,
        who=who,
        cdm=cdm_from_context(ctx),
        lock_timeout=lock_timeout,
        waivers=_waiver_file(waivers),
    )
    _report_submit(result, fmt, report_path)
    ctx.exit(1 if result.status == "rejected" else 0)


@registry.command("status")
@_registry_option()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_lock_option()
def status(registry_path: Path, as_json: bool, lock_timeout: float) -> None:
    """Sites, versions, dates, accepted/rejected, patient and event counts, findings."""
    from cartreg.registry.render import status_table
    from cartreg.registry.status import registry_status
    from cartreg.registry.store import open_registry

    with open_registry(registry_path, lock_timeout=lock_timeout) as reg:
        frame = registry_status(reg)
    if as_json:
        click.echo(json.dumps(frame.to_dicts(), indent=2, default=str))
        return
    if frame.height == 0:
        console().print(f"{registry_path}: no submissions yet")
        return
    console().print(status_table(frame))


@registry.command("diff")
@click.option("--site", required=True, help="Site id.")
@click.option(
    "--from",
    "from_version",
    type=int,
    default=None,
    help="Base version (default: latest accepted version before --to).",
)
@click.option(
    "--to", "to_version", type=int, default=None, help="Target version (default: latest)."
)
@_registry_option()
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the diff as JSON to this file ('-': standard output).",
)
@click.option(
    "--html",
    "html_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the diff as an HTML page.",
)
@_fail_on("never")
@_lock_option()
@click.pass_context
def diff(
    ctx: click.Context,
    site: str,
    from_version: int | None,
    to_version: int | None,
    registry_path: Path,
    json_out: Path | None,
    html_out: Path | None,
    fail_on: str,
    lock_timeout: float,
) -> None:
    """Patients and events added/removed and values changed between two versions."""
    from cartreg.registry.diff import diff_versions
    from cartreg.registry.render import diff_html, diff_renderables
    from cartreg.registry.store import open_registry

    with open_registry(registry_path, lock_timeout=lock_timeout) as reg:
        report = diff_versions(
            reg,
            site.upper(),
            from_version=from_version,
            to_version=to_version,
            cdm=cdm_from_context(ctx),
        )
    text = json.dumps(report.to_dict(), indent=2, default=str) + "\n"
    if json_out is not None and str(json_out) == "-":
        click.echo(text, nl=False)
    else:
        out = console()
        for item in diff_renderables(report):
            out.print(item)
        if json_out is not None:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(text, encoding="utf-8")
    if html_out is not None:
        html_out.parent.mkdir(parents=True, exist_ok=True)
        html_out.write_text(diff_html(report), encoding="utf-8")
    ctx.exit(exit_code_for(report.findings, fail_on))


def _decide(
    registry_path: Path,
    site: str,
    version: int,
    reason: str,
    who: str | None,
    lock_timeout: float,
    status_value: str,
) -> None:
    from cartreg.registry.submit import decide

    decide(
        registry_path,
        site=site.upper(),
        version=version,
        status=status_value,
        reason=reason,
        who=who,
        lock_timeout=lock_timeout,
    )
    from rich.markup import escape

    console().print(escape(f"{site.upper()} version {version}: {status_value} ({reason})"))


def _decision_options(func: F) -> F:
    for decorator in reversed(
        [
            click.option("--site", required=True, help="Site id."),
            click.option("--version", "version", required=True, type=int, help="Version number."),
            click.option("--reason", required=True, help="Why (kept in the decision log)."),
            click.option("--who", default=None, help="Reviewer (default: login name)."),
            _registry_option(),
            _lock_option(),
        ]
    ):
        func = decorator(func)
    return func


@registry.command("accept")
@_decision_options
def accept(
    site: str, version: int, reason: str, who: str | None, registry_path: Path, lock_timeout: float
) -> None:
    """Accept a stored version (e.g. a rejected one after review), with a reason."""
    _decide(registry_path, site, version, reason, who, lock_timeout, "accepted")


@registry.command("reject")
@_decision_options
def reject(
    site: str, version: int, reason: str, who: str | None, registry_path: Path, lock_timeout: float
) -> None:
    """Reject a stored version so that it is never merged, with a reason."""
    _decide(registry_path, site, version, reason, who, lock_timeout, "rejected")


def _report_linkage(linkage: dict[str, Any]) -> None:
    """Capacity warnings and the EM check of a merge's linkage, for the terminal."""
    from rich.markup import escape

    out = console()
    out.print(
        f"record linkage ({linkage['mode']}, {linkage['new_records']} of {linkage['records']} "
        f"records scored): prior {linkage['prior_weight']:+.1f} bits, "
        f"listed at p >= {linkage['min_probability']}"
    )
    for row in linkage["capacity"]:
        if not row["separable"]:
            out.print(
                escape(
                    f"[linkage capacity] {row['site_a']} ~ {row['site_b']}: the evidence both "
                    f"record ({row['evidence']}) finds about {row['predicted_recall']:.0%} of "
                    f"their duplicates at this size (capacity about "
                    f"{row['capacity_records']:,} records)"
                ),
                style="yellow",
            )
    em = linkage.get("em_check")
    if em is not None:
        state = "converged" if em["converged"] else "did NOT converge (estimates unreliable)"
        out.print(
            f"EM check: {state}; {len(em['disagreements'])} level(s) differ from the expert "
            "weights by more than 1 bit (see findings.json, REG-LINKAGE-EM)"
        )


@registry.command("merge")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder.",
)
@_registry_option()
@click.option(
    "--secret-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="File holding the consortium secret for pseudonymous keys (else $CARTREG_SECRET).",
)
@click.option(
    "--no-pseudonyms",
    is_flag=True,
    help="Merge without a secret: publish site-local patient keys (never the default; "
    "$CARTREG_SECRET is then not used).",
)
@click.option(
    "--links",
    "links_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Reviewed link file (YAML or CSV) deciding duplicate pairs.",
)
@click.option(
    "--min-probability",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    help="Lowest match probability of a listed duplicate pair (default: the linkage model's, 0.7).",
)
@click.option(
    "--expected-duplicate-rate",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=None,
    help="Share of patients expected to be reported by two sites (sets the linkage prior; "
    "default: the model's, 0.05).",
)
@click.option(
    "--relink",
    is_flag=True,
    help="Score every pair again instead of only the records new or changed since the last merge.",
)
@click.option(
    "--em-check",
    is_flag=True,
    help="Also estimate the linkage weights by EM and report where they disagree with the "
    "expert values (slower; never used for scoring).",
)
@click.option(
    "--html",
    "html_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the merge's findings (duplicate pairs with their explanations) as an "
    "HTML report.",
)
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output folder.")
@_fail_on()
@_lock_option()
@click.pass_context
def merge(
    ctx: click.Context,
    out_dir: Path,
    registry_path: Path,
    secret_file: Path | None,
    no_pseudonyms: bool,
    links_path: Path | None,
    min_probability: float | None,
    expected_duplicate_rate: float | None,
    relink: bool,
    em_check: bool,
    html_out: Path | None,
    overwrite: bool,
    fail_on: str,
    lock_timeout: float,
) -> None:
    """Merge the latest accepted version of each site into one dataset."""
    from rich.markup import escape

    from cartreg.registry.merge import merge_registry
    from cartreg.registry.pseudonym import load_secret
    from cartreg.reports.terminal import findings_summary

    result = merge_registry(
        registry_path,
        out_dir,
        # $CARTREG_SECRET is ignored under --no-pseudonyms; an explicit --secret-file is not
        secret=load_secret(secret_file) if secret_file or not no_pseudonyms else None,
        no_pseudonyms=no_pseudonyms,
        links_path=links_path,
        min_probability=min_probability,
        expected_duplicate_rate=expected_duplicate_rate,
        relink=relink,
        em_check=em_check,
        overwrite=overwrite,
        cdm=cdm_from_context(ctx),
        lock_timeout=lock_timeout,
        html_path=html_out,
    )
    out = console()
    manifest = result.manifest
    for site in manifest["sites"]:
        out.print(f"{site['site_id']}: version {site['version']}")
    for name, rec in manifest["reconciliation"].items():
        out.print(
            f"  {name}: {rec['rows_in']} rows in, {rec['dropped_as_duplicates']} dropped as "
            f"reviewed duplicates, {rec['rows_out']} out"
        )
    out.print(manifest["patient_keys"]["note"])
    dups = manifest["duplicates"]
    if dups["candidates"]:
        out.print(
            f"[yellow]{dups['candidates']} possible cross-site duplicate pair(s), "
            f"{dups['unreviewed']} not reviewed[/]: see {out_dir / 'duplicates.csv'}"
        )
        # The terminal shows the first pairs; duplicates.csv has them all (a large merge can
        # list hundreds of thousands, which would take minutes to print and nobody would read).
        for row in result.duplicates.head(SHOWN_PAIRS).iter_rows(named=True):
            probability = row["match_probability"]
            shown = "not scored" if probability is None else f"p={probability:.3f}"
            out.print(
                escape(
                    f"  {row['pair_id']}: {row['key_a']} ({row['site_a']}) ~ {row['key_b']} "
                    f"({row['site_b']}) {shown} {row['decision'] or 'UNREVIEWED'}"
                )
            )
        if result.duplicates.height > SHOWN_PAIRS:
            more = result.duplicates.height - SHOWN_PAIRS
            out.print(f"  … and {more} more pair(s) in {out_dir / 'duplicates.csv'}")
        out.print(
            f"  explain a pair: cartreg registry review PAIR_ID --merged {escape(str(out_dir))}"
        )
    _report_linkage(dups["linkage"])
    if result.findings.height:
        out.print(findings_summary(result.findings))
    out.print(f"wrote {out_dir}")
    ctx.exit(exit_code_for(result.findings, fail_on))


def _merged_option() -> Callable[[F], F]:
    return click.option(
        "--merged",
        "merged_dir",
        required=True,
        type=click.Path(exists=True, file_okay=False, path_type=Path),
        help="Output folder of the merge that listed the pair (its duplicates.csv).",
    )


@registry.command("review")
@click.argument("pair_id")
@_merged_option()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def review(pair_id: str, merged_dir: Path, as_json: bool) -> None:
    """Explain a listed duplicate pair: each comparison's match weight.

    PAIR_ID is as in the merge's duplicates.csv (DUP-...). The explanation names comparisons
    and levels only, never a value of the two records.
    """
    from rich.markup import escape
    from rich.table import Table

    from cartreg.registry.duplicates import pair_explanation, read_pair

    explained = pair_explanation(read_pair(merged_dir, pair_id))
    if as_json:
        click.echo(json.dumps(explained, indent=2, default=str))
        return
    out = console()
    out.print(
        escape(
            f"{explained['pair_id']}: {explained['key_a']} ({explained['site_a']}) ~ "
            f"{explained['key_b']} ({explained['site_b']})"
            + (f", cluster {explained['cluster_id']}" if explained["cluster_id"] else "")
        )
    )
    table = Table(title="match weight, comparison by comparison (bits; + for, - against)")
    for name in ("comparison", "level", "weight", "running total"):
        table.add_column(name, justify="right" if name in ("weight", "running total") else "left")
    for step in explained["steps"]:
        table.add_row(
            escape(step["comparison"]),
            escape(step["level"]),
            f"{step['match_weight']:+.2f}",
            f"{step['cumulative']:+.2f}",
        )
    out.print(table)
    probability = explained["match_probability"]
    if probability is None:
        out.print("not scored by the current model (listed because it was reviewed)")
    else:
        out.print(
            f"match weight {explained['match_weight']:+.2f} -> match probability {probability:.4f}"
        )
    decision = explained["decision"]
    out.print(
        escape(f"reviewed: {decision}, keep {explained['keep'] or 'both'} ({explained['reason']})")
        if decision
        else f"not reviewed: decide with `cartreg registry link {explained['pair_id']} ...`"
    )


@registry.command("link")
@click.argument("pair_id")
@_merged_option()
@click.option(
    "--decision", required=True, type=click.Choice(["same", "distinct"]), help="The verdict."
)
@click.option("--keep", default=None, help="For 'same': the key of the record that stays.")
@click.option("--reason", required=True, help="Why (kept with the decision).")
@click.option("--who", default=None, help="Reviewer (default: login name).")
@_registry_option()
@click.option(
    "--secret-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Consortium secret, to record a decision on pseudonymous keys (else $CARTREG_SECRET).",
)
@_lock_option()
def link(
    pair_id: str,
    merged_dir: Path,
    decision: str,
    keep: str | None,
    reason: str,
    who: str | None,
    registry_path: Path,
    secret_file: Path | None,
    lock_timeout: float,
) -> None:
    """Record a reviewed decision on PAIR_ID in the registry: it holds for every later merge."""
    from rich.markup import escape

    from cartreg.registry.duplicates import read_pair
    from cartreg.registry.linkage_store import decide_pair
    from cartreg.registry.pseudonym import load_secret
    from cartreg.registry.store import current_user, open_registry

    row = read_pair(merged_dir, pair_id)
    with open_registry(registry_path, write=True, lock_timeout=lock_timeout) as reg:
        decide_pair(
            reg,
            key_a=row["key_a"],
            key_b=row["key_b"],
            decision=decision,
            keep=keep,
            reason=reason,
            reviewer=who or current_user(),
            secret=load_secret(secret_file),
        )
    console().print(
        escape(
            f"{row['pair_id']}: recorded '{decision}'"
            + (f", keep {keep}" if keep else "")
            + "; it applies from the next merge"
        )
    )


def _print_copy(result: Any, what: str) -> None:
    tables = len(result.rows)
    console().print(
        f"{what} {result.path}: {tables} tables, {result.total_rows} rows, verified "
        f"(sha256 {result.sha256})"
    )


@registry.command("backup")
@click.argument("target", type=click.Path(dir_okay=False, path_type=Path))
@_registry_option()
@_lock_option()
def backup(target: Path, registry_path: Path, lock_timeout: float) -> None:
    """Write a verified copy of the registry to the new file TARGET.

    Submits wait while the copy is made; reads go on. Restore it with `registry restore`.
    """
    from cartreg.registry.backup import backup_registry

    _print_copy(backup_registry(registry_path, target, lock_timeout=lock_timeout), "wrote")


@registry.command("restore")
@click.argument("backup_path", type=click.Path(dir_okay=False, path_type=Path))
@_registry_option()
@_lock_option()
def restore(backup_path: Path, registry_path: Path, lock_timeout: float) -> None:
    """Replace the registry by a verified copy of the backup BACKUP_PATH.

    The replaced registry file is kept next to it as <registry>.replaced-<time>.
    """
    from cartreg.registry.backup import restore_registry

    result = restore_registry(backup_path, registry_path, lock_timeout=lock_timeout)
    _print_copy(result, "restored")
    if result.replaced is not None:
        console().print(f"the replaced registry was kept as {result.replaced}")


@registry.command("verify")
@_registry_option()
@_lock_option()
def verify(registry_path: Path, lock_timeout: float) -> None:
    """Read every table of the registry; exit 2 if any of it is damaged."""
    from cartreg.registry.backup import verify_registry

    rows = verify_registry(registry_path, lock_timeout=lock_timeout)
    console().print(f"{registry_path}: {len(rows)} tables, {sum(rows.values())} rows, all readable")
