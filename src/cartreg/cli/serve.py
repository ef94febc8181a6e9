"""``cartreg serve``: the consortium portal over a registry (FastAPI app, one uvicorn process)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import click

from cartreg.cli.common import cdm_from_context, registry_option


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command()
@registry_option()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for uploads being processed and merged datasets "
    "(default: <registry>.portal beside the registry).",
)
@click.option(
    "--secret-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The consortium secret for pseudonymous keys (else $CARTREG_SECRET); without one, "
    "merges are disabled.",
)
@click.option(
    "--max-upload-mb",
    type=click.IntRange(1, 100_000),
    default=200,
    show_default=True,
    help="Largest upload (all files of one upload together).",
)
@click.option(
    "--forwarded-allow-ips",
    default=None,
    help="Addresses of the TLS reverse proxy whose X-Forwarded-For/-Proto headers are trusted "
    "(e.g. 127.0.0.1).",
)
@click.pass_context
def serve(
    ctx: click.Context,
    registry_path: Path,
    host: str,
    port: int,
    data_dir: Path | None,
    secret_file: Path | None,
    max_upload_mb: int,
    forwarded_allow_ips: str | None,
) -> None:
    """Serve the portal for REGISTRY: sites upload, coordinators review and merge (docs/portal.md).

    Listens on 127.0.0.1 by default: put a TLS reverse proxy in front of it for other machines.
    """
    import dataclasses
    import logging

    import uvicorn

    from cartreg.errors import InputError
    from cartreg.portal.app import create_app
    from cartreg.portal.config import MB, Limits, PortalConfig
    from cartreg.registry.pseudonym import load_secret

    if not registry_path.is_file():
        raise InputError(
            "registry not found",
            where=str(registry_path),
            hint="create it with `cartreg registry init`",
        )
    if not _loopback(host):
        click.echo(
            f"warning: listening on {host}: the portal speaks plain HTTP; serve it to other "
            "machines only behind a TLS reverse proxy (docs/portal.md)",
            err=True,
        )
    config = PortalConfig.for_registry(
        registry_path.resolve(),
        data_dir=data_dir.resolve() if data_dir else None,
        secret=load_secret(secret_file),
        limits=dataclasses.replace(Limits(), upload_bytes=max_upload_mb * MB),
    )
    if config.secret is None:
        click.echo(
            "note: no consortium secret ($CARTREG_SECRET or --secret-file): merges are disabled",
            err=True,
        )
    app = create_app(config, cdm=cdm_from_context(ctx))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    click.echo(f"cartreg portal on http://{host}:{port}/ (registry {registry_path})", err=True)
    uvicorn.run(
        app,
        host=host,
        port=port,
        workers=1,  # the writer and the worker are threads of this one process
        proxy_headers=forwarded_allow_ips is not None,
        forwarded_allow_ips=forwarded_allow_ips,
        server_header=False,
        log_level="info",
    )
