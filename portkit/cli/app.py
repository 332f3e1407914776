"""The ``portkit`` command group, its entry point, and the terminal it writes to.

Nothing heavy is imported at start-up: frameworks load only in worker processes, and the
library modules load when a command runs, so ``portkit --help`` is instant.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import cloup

from portkit.errors import ExitCode, PortkitError
from portkit.io import sweep

CONTEXT = cloup.Context.settings(
    help_option_names=["-h", "--help"],
    formatter_settings=cloup.HelpFormatter.settings(max_width=100, col1_max_width=32))


def console(stderr: bool = False) -> Any:
    """A rich console; piped or captured output is 140 columns wide, not squeezed into 80."""
    from rich.console import Console

    out = Console(stderr=stderr, highlight=False, soft_wrap=False)
    if not out.is_terminal:
        out.width = 140
    return out


def show(tables: list[Any]) -> None:
    """Print tables and lines on stdout."""
    out = console()
    for table in tables:
        out.print(table)


def emit(report: Any, tables: Callable[[Any], list[Any]], as_json: bool) -> None:
    """Print a report: its JSON (``--json``), or its tables."""
    if as_json:
        click.echo(report.to_json())
    else:
        show(tables(report))


def progress(enabled: bool) -> Any:
    """``progress(message)`` context managers that show a spinner and elapsed time on stderr."""
    err = console(stderr=True)

    @contextlib.contextmanager
    def step(message: str) -> Iterator[None]:
        if not enabled:
            yield
            return
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        start = time.perf_counter()
        ok = False
        try:
            if err.is_terminal:
                with Progress(SpinnerColumn(), TextColumn("{task.description}"),
                              TimeElapsedColumn(), console=err, transient=True) as bar:
                    bar.add_task(message, total=None)
                    yield
            else:
                yield
            ok = True
        finally:
            mark = "[green]✓[/]" if ok else "[red]✗[/]"
            err.print(f"{mark} {message} [dim]({time.perf_counter() - start:.1f} s)[/]")

    return step


@cloup.group(context_settings=CONTEXT)
@click.option("--debug", is_flag=True, help="Show tracebacks (also from worker processes).")
@click.version_option(package_name="portkit")
def cli(debug: bool) -> None:
    """Convert models between PyTorch, TensorFlow, ONNX and TFLite, and prove every artifact
    matches its source by running both.

    \b
    Examples:
      portkit demo
      portkit convert model.pt --to tflite --input x:1x3x224x224
      portkit convert model.pt2 --to onnx --report report.json
      portkit inspect model.tflite
      portkit validate model.tflite --reference model.pt2
      portkit debug model.tflite --reference model.pt2 --overlay errors.json
      portkit bench model.onnx model.tflite
      portkit check portkit.toml --junit junit.xml

    \b
    Exit codes: 0 converted and parity passed; 1 converted, parity failed (the artifact kept
    as NAME.failed.EXT, -o untouched); 2 bad usage or bad input file; 3 no route could
    convert; 4 unsafe input; 5 a runtime crashed or ran out of memory; 6 timeout; 129/130/143
    SIGHUP/SIGINT/SIGTERM (cleaned up); 70 internal error (a bug: please report it).
    """


class Interrupted(BaseException):
    """SIGTERM or SIGHUP arrived: raised in the main thread, so every ``finally`` and ExitStack
    on the way out runs (workers killed, staging folders removed) as for Ctrl-C.

    Attributes:
        signum: The signal's number; the exit status is 128 + it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _interrupt(signum: int, _frame: object) -> None:
    # Once: a second signal must not cut the clean-up short.
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signum)


def _handle_signals() -> dict[signal.Signals, Any]:
    """Raise ``Interrupted`` on SIGTERM and SIGHUP (in the main thread only, where Python runs
    signal handlers); returns the handlers to put back."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP,
                                                       signal.SIGINT)}
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    return previous


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn errors into one line and an exit code.

    SIGINT exits 130, SIGTERM 143 and SIGHUP 129 (128 + the signal), after cleaning up.
    """
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    previous = _handle_signals()
    try:
        sweep(Path(tempfile.gettempdir()))  # what runs killed before cleaning up left behind
        code = cli.main(args=args, prog_name="portkit", standalone_mode=False)
    except Interrupted as e:
        click.echo(f"portkit: interrupted ({e})", err=True)
        code = 128 + e.signum
    except click.exceptions.Abort:
        click.echo("portkit: interrupted (SIGINT)", err=True)
        code = 130
    except click.ClickException as e:  # a bad flag or value: one line, like every error
        ctx = getattr(e, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        click.echo(f"portkit: error: {' '.join(e.format_message().split())}{hint}", err=True)
        code = ExitCode.INVALID_INPUT
    except PortkitError as e:
        if debug:
            traceback.print_exc()
            click.echo(e.traceback, err=True)
        message = " ".join(str(e).split())
        if e.exit_code == ExitCode.INTERNAL:  # a worker raised what nobody mapped: our bug
            click.echo(f"portkit: internal error in a worker ({message}); this is a bug: please "
                       "report it with the output of --debug", err=True)
        else:
            click.echo(f"portkit: error: {message}", err=True)
        code = e.exit_code
    except Exception as e:  # noqa: BLE001 - anything else is our bug
        if debug:
            traceback.print_exc()
        click.echo(f"portkit: internal error ({type(e).__name__}: {e}); this is a bug: please "
                   "report it with the output of --debug", err=True)
        code = ExitCode.INTERNAL
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    sys.exit(int(code or 0))
