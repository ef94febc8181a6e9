"""Entry point of the ``cartreg`` command.

Subcommands are imported only when invoked, so ``cartreg --help`` stays fast: polars, pandera,
lifelines and GX are never imported at start-up.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback

import click

from cartreg import __version__

# name -> "module:attribute". A command appears once its module exists.
COMMANDS: dict[str, tuple[str, str]] = {
    "schema": ("cartreg.cli.schema", "Data model: documentation and conformance checks."),
    "ingest": ("cartreg.cli.ingest", "Harmonize a site submission into CDM tables."),
    "profile": ("cartreg.cli.profile", "Profile source files to help write a mapping."),
    "mapping": ("cartreg.cli.mapping", "Draft and check site mapping files."),
    "synth": ("cartreg.cli.synth", "Simulate a synthetic multi-site cohort."),
    "validate": ("cartreg.cli.validate", "Run data-quality rules on harmonized tables."),
    "check": ("cartreg.cli.check", "Ingest and validate a submission (the everyday command)."),
    "rules": ("cartreg.cli.rules", "List and document data-quality rules."),
    "export": ("cartreg.cli.export", "Export to other tools (Great Expectations)."),
    "registry": ("cartreg.cli.registry", "Consortium registry: submit, status, diff, merge."),
    "queries": ("cartreg.cli.queries", "Follow findings to sites and back: export, import, close."),
    "analyze": ("cartreg.cli.analyze", "Time-to-event datasets and outcome analyses."),
    "demo": ("cartreg.cli.demo", "Run the whole pipeline on sample_data/."),
    "serve": ("cartreg.cli.serve", "Run the consortium portal (web server) over a registry."),
    "users": ("cartreg.cli.users", "Portal users: add, list, disable."),
    "sites": ("cartreg.cli.sites", "Portal sites: register the mapping of a site's uploads."),
    "audit": ("cartreg.cli.audit", "Print the portal's audit log and check its hash chain."),
}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when that command runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name, (module, _) in COMMANDS.items() if importlib.util.find_spec(module)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS or not importlib.util.find_spec(COMMANDS[cmd_name][0]):
            return None
        module = importlib.import_module(COMMANDS[cmd_name][0])
        command: click.Command = getattr(module, cmd_name.replace("-", "_"))
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Short help comes from COMMANDS so that `cartreg --help` imports no subcommand.
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cartreg")
@click.option(
    "--schemas",
    type=click.Path(file_okay=False, path_type=str),
    envvar="CARTREG_SCHEMAS",
    default=None,
    help="Folder with the CDM schemas and vocabularies (default: bundled; env CARTREG_SCHEMAS).",
)
@click.pass_context
def cli(ctx: click.Context, schemas: str | None) -> None:
    """cartreg: harmonize, validate and analyse B-ALL CD19 CAR T registry data.

    Exit codes: 0 clean, 1 findings at or above --fail-on, 2 unusable input or configuration,
    3 an internal error (a bug: rerun with CARTREG_DEBUG=1 and report it).
    """
    ctx.ensure_object(dict)
    ctx.obj["schemas"] = schemas


def run(argv: list[str] | None = None) -> int:
    """Run one cartreg command and return its exit code: the exit-code contract, kept here only.

    0 clean, 1 findings at or above ``--fail-on`` (the command's own ``ctx.exit``), 2 unusable
    input, configuration or command line, 3 an internal error. Every failure prints one line on
    stderr (at most ``MESSAGE_LIMIT`` characters). Anything else raised, including a Rust panic
    inside polars (``pyo3_runtime.PanicException`` derives from ``BaseException``, not
    ``Exception``), is an internal error; ``CARTREG_DEBUG=1`` adds the traceback.
    """
    from cartreg.errors import CartregError, console_line

    try:
        result = cli.main(args=argv, prog_name="cartreg", standalone_mode=False)
        # without standalone mode, click returns ctx.exit(code) as the result
        return result if isinstance(result, int) else 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.UsageError as exc:
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        click.echo(console_line(f"error: {exc.format_message()}{where}"), err=True)
        return 2
    except click.ClickException as exc:  # e.g. a file click could not open
        click.echo(console_line(f"error: {exc.format_message()}"), err=True)
        return 2
    except CartregError as exc:
        click.echo(console_line(f"error: {exc.one_line()}"), err=True)
        return 2
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except SystemExit:
        raise
    except BaseException as exc:  # a bug in cartreg (or a panic in a library), not the input
        if os.environ.get("CARTREG_DEBUG"):
            traceback.print_exc()
        text = str(exc).strip()
        first = text.splitlines()[0] if text else ""
        click.echo(
            console_line(
                f"internal error: {type(exc).__name__}: {first}",
                suffix=" (rerun with CARTREG_DEBUG=1 for a traceback and report it)",
            ),
            err=True,
        )
        return 3


def main(argv: list[str] | None = None) -> int:
    """Console entry point: the exit code of :func:`run`."""
    return run(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
