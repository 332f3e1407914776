"""The ``portkit`` command group, its entry point, and the terminal it writes to.

Nothing heavy is imported at start-up: frameworks load only in worker processes, and the
library modules load when a command runs, so ``portkit --help`` is instant.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
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

from portkit import errors
from portkit.errors import ExitCode, PortkitError
from portkit.io import sweep

CONTEXT = cloup.Context.settings(
    help_option_names=["-h", "--help"],
    formatter_settings=cloup.HelpFormatter.settings(max_width=100, col1_max_width=32))


@dataclasses.dataclass
class Run:
    """What ``main`` learns while a command runs (the context's ``obj``).

    Attributes:
        reported: The command printed its report on stdout (or tried to, to a closed pipe).
    """

    reported: bool = False


def _reader_gone(stream: Any) -> None:
    """The reader of ``stream`` went away (``portkit … | head -1``): point it at /dev/null, as
    Python's docs on SIGPIPE advise, so the rest of the run and the interpreter's exit write
    nowhere instead of meeting the closed pipe again."""
    with contextlib.suppress(OSError, ValueError):  # no file descriptor (a test's capture)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)


def console(stderr: bool = False) -> Any:
    """A rich console; piped or captured output is 140 columns wide, not squeezed into 80. A
    closed pipe silences it (rich's own handling exits 1, which means "parity failed")."""
    from rich.console import Console

    out = Console(stderr=stderr, highlight=False, soft_wrap=False)
    if not out.is_terminal:
        out.width = 140

    def closed() -> None:
        out.quiet = True
        _reader_gone(out.file)

    out.on_broken_pipe = closed  # type: ignore[method-assign]
    return out


def show(tables: list[Any]) -> None:
    """Print tables and lines on stdout."""
    out = console()
    for table in tables:
        out.print(table)


def emit(report: Any, tables: Callable[[Any], list[Any]], as_json: bool) -> None:
    """Print a report: its JSON (``--json``), or its tables. A reader that closed the pipe
    leaves the command's verdict as it is: the rest of the output goes nowhere."""
    text = report.to_json() if as_json else ""
    ctx = click.get_current_context(silent=True)
    if ctx is not None and isinstance(ctx.obj, Run):
        ctx.obj.reported = True
    if not as_json:
        show(tables(report))
        return
    try:
        click.echo(text)
    except BrokenPipeError:
        _reader_gone(sys.stdout)


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


class ReaderGone(Exception):
    """The reader of stdout went away before any verdict was known (a broken pipe escaping a
    command, its ``--help`` or ``--version``): raised instead of the BrokenPipeError, which
    click would turn into exit 1, the code for "parity failed"."""


@contextlib.contextmanager
def _reader_may_go() -> Iterator[None]:
    try:
        yield
    except BrokenPipeError as e:
        raise ReaderGone(str(e)) from e


class Group(cloup.Group):
    """The ``portkit`` group: a broken pipe anywhere in it is ``ReaderGone``."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        with _reader_may_go():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        with _reader_may_go():
            return super().invoke(ctx)


@cloup.group(cls=Group, context_settings=CONTEXT)
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
    convert; 4 unsafe input; 5 a runtime crashed or ran out of memory, open files or disk; 6
    timeout; 129/130/143 SIGHUP/SIGINT/SIGTERM (cleaned up); 141 stdout closed before a verdict
    (a closed pipe while the report prints keeps the verdict's code); 70 internal error (a bug:
    please report it). With --json, stdout holds one JSON document on every exit.
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


def _prints_json(args: list[str]) -> bool:
    """Whether the command in ``args`` was given ``--json`` as its flag to print the report as
    JSON (``check --json PATH`` names a file instead)."""
    name = next((arg for arg in args if not arg.startswith("-")), "")
    command = cli.commands.get(name)
    return ("--json" in args and command is not None
            and any(param.name == "as_json" for param in command.params))


def _failure(e: BaseException, args: list[str]) -> tuple[int, str, str, str]:
    """How an error that ended the run is reported: its exit code, its class name, its one-line
    message, and the line stderr gets (empty for a closed pipe)."""
    if isinstance(e, Interrupted):
        return 128 + e.signum, "Interrupted", f"interrupted ({e})", f"portkit: interrupted ({e})"
    if isinstance(e, click.exceptions.Abort):
        return 130, "Interrupted", "interrupted (SIGINT)", "portkit: interrupted (SIGINT)"
    if isinstance(e, (ReaderGone, BrokenPipeError)):  # before any verdict: as a shell says
        _reader_gone(sys.stdout)
        return 128 + signal.SIGPIPE, type(e).__name__, "broken pipe", ""
    if isinstance(e, click.ClickException):  # a bad flag or value: one line, like every error
        ctx = getattr(e, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        message = f"{' '.join(e.format_message().split())}{hint}"
        return ExitCode.INVALID_INPUT, type(e).__name__, message, f"portkit: error: {message}"
    if errors.maps_os_error(e):  # a limit, a full disk, a bad path: not a bug
        command = next((arg for arg in args if arg in cli.commands), "")
        e = errors.from_os_error(e, " ".join(("portkit", command)).strip())  # type: ignore[arg-type]
    if isinstance(e, PortkitError):
        message = " ".join(str(e).split())
        if e.exit_code == ExitCode.INTERNAL:  # a worker raised what nobody mapped: our bug
            return e.exit_code, type(e).__name__, message, (
                f"portkit: internal error in a worker ({message}); this is a bug: please "
                "report it with the output of --debug")
        return e.exit_code, type(e).__name__, message, f"portkit: error: {message}"
    message = " ".join(f"{type(e).__name__}: {e}".split())
    return ExitCode.INTERNAL, type(e).__name__, message, (
        f"portkit: internal error ({message}); this is a bug: please report it with the output "
        "of --debug")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn errors into one line and an exit code.

    SIGINT exits 130, SIGTERM 143 and SIGHUP 129 (128 + the signal), after cleaning up; a
    reader that closed the pipe leaves the verdict's code (0 or 1 and the rest, when the report
    was being printed), else 141 (128 + SIGPIPE). With ``--json`` stdout holds one JSON
    document on every exit: the report, or ``{"exit_code", "error", "error_type"}``.
    """
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    run = Run()
    # A name the terminal's encoding can't show (PYTHONIOENCODING=ascii) is escaped, not a crash.
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    previous = _handle_signals()
    try:
        sweep(Path(tempfile.gettempdir()))  # what runs killed before cleaning up left behind
        code = cli.main(args=args, prog_name="portkit", standalone_mode=False, obj=run)
    except (Interrupted, click.exceptions.Abort, click.ClickException, Exception) as e:
        if debug and not isinstance(e, (Interrupted, click.exceptions.Abort,
                                        click.ClickException)):
            traceback.print_exc()
            if getattr(e, "traceback", ""):  # where a worker raised it
                click.echo(e.traceback, err=True)  # type: ignore[attr-defined]
        code, error_type, message, line = _failure(e, args)
        if line:
            with contextlib.suppress(OSError):
                click.echo(line, err=True)
        if _prints_json(args) and not run.reported and code != 128 + signal.SIGPIPE:
            with contextlib.suppress(BrokenPipeError):
                click.echo(json.dumps({"exit_code": int(code), "error": message,
                                       "error_type": error_type}))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    sys.exit(int(code or 0))
