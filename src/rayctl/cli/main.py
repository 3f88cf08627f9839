"""`rayctl` entry point: builds the Typer app and turns errors into exit codes.

Each command group lives in its own module with a `register(app)` function. Heavy
libraries (ray, sky, boto3, torch) are imported inside commands, never here.
"""

from __future__ import annotations

import os
import sys

import typer

from ..errors import EXIT_INTERRUPTED, ManyErrors, RayctlError

app = typer.Typer(
    name="rayctl",
    help="Plan, launch and cost Ray workloads on the cheapest GPU offers (local Ray by default).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"rayctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """rayctl: launcher and cost optimizer for Ray workloads on GPU clouds."""


from . import cloud, cost, launch, plan, schedule  # noqa: E402  (each registers its command group)

for _group in (plan, launch, cost, schedule, cloud):
    _group.register(app)


def report(err: RayctlError) -> None:
    """The one place errors are written: `rayctl: error: MESSAGE` on stderr."""
    for e in err.errors if isinstance(err, ManyErrors) else [err]:
        sys.stderr.write(f"rayctl: error: {e.message.rstrip()}\n")
    if isinstance(err, ManyErrors) and err.footer:
        sys.stderr.write(err.footer.rstrip() + "\n")


def _loopback_without_proxy() -> None:
    """rayctl's own heads listen on loopback (127.0.0.2): never send that through an HTTP proxy.

    Ray's job client uses `requests`, which reads NO_PROXY; the CLI (the application, not
    library code) adds loopback to it for this process when a proxy is configured.
    """
    if not any(os.environ.get(k) for k in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy",
                                           "ALL_PROXY", "all_proxy")):
        return
    for k in ("NO_PROXY", "no_proxy"):
        cur = [h for h in os.environ.get(k, "").split(",") if h]
        os.environ[k] = ",".join(cur + [h for h in ("127.0.0.0/8", "localhost") if h not in cur])


def _reader_went_away(e: SystemExit) -> bool:
    """True when the command ended with exit 1 because stdout's reader closed the pipe (EPIPE).

    Click (swapping stdout for its `PacifyFlushWrapper`) and rich (`on_broken_pipe`, while
    handling the BrokenPipeError) both exit 1 then; a pipe into `head` is not a failure,
    so rayctl exits 0 there, like `--json | head` already did.
    """
    from click.utils import PacifyFlushWrapper

    return isinstance(sys.stdout, PacifyFlushWrapper) or isinstance(e.__context__, BrokenPipeError)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so Python's exit-time flush does not print a second EPIPE."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> None:
    _loopback_without_proxy()
    try:
        app(args=argv, prog_name="rayctl", standalone_mode=True)
    except SystemExit as e:
        if e.code == 1 and _reader_went_away(e):
            sys.exit(0)  # `rayctl plan | head`: the reader had what it wanted; not an error
        raise
    except BrokenPipeError:
        _silence_stdout()
        sys.exit(0)
    except RayctlError as e:
        report(e)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("rayctl: interrupted\n")
        sys.exit(EXIT_INTERRUPTED)
    except Exception as e:  # a bug in rayctl: say so in one line unless asked for the traceback
        if os.environ.get("RAYCTL_DEBUG"):
            raise
        sys.stderr.write(f"rayctl: internal error: {type(e).__name__}: {e} "
                         "(set RAYCTL_DEBUG=1 for the traceback)\n")
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
