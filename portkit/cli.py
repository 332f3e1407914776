"""The ``portkit`` command: parse options, call one library function, render the result.

Nothing heavy is imported at start-up: frameworks load only in worker processes, and the
library modules load when a command runs, so ``portkit --help`` is instant.
"""

from __future__ import annotations

import contextlib
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from portkit.errors import ExitCode, PortkitError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False, soft_wrap=False)
    if not console.is_terminal:  # piped or captured: don't squeeze tables into 80 columns
        console.width = 140
    return console


def _progress(enabled: bool) -> Any:
    """``progress(message)`` context managers that show a spinner and elapsed time on stderr."""
    err = _console(stderr=True)

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


@click.group(context_settings=CONTEXT)
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

    \b
    Exit codes: 0 converted and parity passed; 1 converted, parity failed (artifact kept);
    2 bad usage or bad input file; 3 no route could convert; 4 unsafe input;
    5 a runtime crashed; 6 timeout; 70 internal error (a bug: please report it).
    """


@cli.command(context_settings=CONTEXT)
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--to", "to", required=True, metavar="FORMAT",
              help="Target format: onnx, tflite, savedmodel, torchscript, pt2.")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Artifact path (default: beside SOURCE with the target's suffix).")
@click.option("--input", "inputs", multiple=True, metavar="NAME:SHAPE[:DTYPE]",
              help="Input shape the model doesn't store, e.g. x:1x3x224x224 or ids:1x128:int64. "
                   "Repeat per input.")
@click.option("--inputs", "inputs_file", type=click.Path(path_type=Path),
              help="An .npz of input arrays (by input name, or in order) instead of seeded ones.")
@click.option("--route", help="Force one route, e.g. litert-torch or torch.onnx+onnx2tf.")
@click.option("--signature", metavar="NAME",
              help="SavedModel signature to convert (default: serving_default).")
@click.option("--trust-model", is_flag=True,
              help="Load Keras Lambda layers and custom objects (they run Python code).")
@click.option("--quantize", type=click.Choice(["fp16", "dynamic", "int8", "int16x8"]),
              help="TFLite quantization; int8 and int16x8 need --calibration.")
@click.option("--calibration", type=click.Path(path_type=Path),
              help="Representative inputs for int8/int16x8: an .npz (arrays by input name, "
                   "samples on the first axis) or a folder of .npy files.")
@click.option("--int8-io", is_flag=True, help="With --quantize int8: int8 inputs and outputs too.")
@click.option("--no-flex", is_flag=True,
              help="Fail (exit 3) rather than write a TFLite model needing the Flex runtime.")
@click.option("--opset", type=int, help="ONNX opset (default: the converter's newest).")
@click.option("--atol", type=float,
              help="Absolute tolerance [default: 1e-4 fp32, 1e-2 fp16; not used when quantized].")
@click.option("--rtol", type=float, help="Relative tolerance [default: 1e-3 fp32, 1e-2 fp16].")
@click.option("--samples", type=int,
              help="Inputs to compare on [default: 1; 32 when quantized, judged by cosine and "
                   "top-1/top-5 agreement].")
@click.option("--no-validate", is_flag=True, help="Convert only; don't run and compare.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of generated inputs.")
@click.option("--timeout", type=float, default=900, show_default=True,
              help="Seconds each step (load, convert, run) may take in its worker.")
@click.option("--report", "report_path", type=click.Path(path_type=Path),
              help="Also write the JSON report to this file.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report instead of tables.")
def convert(source: Path, to: str, output: Path | None, inputs: tuple[str, ...],
            inputs_file: Path | None, route: str | None, signature: str | None,
            trust_model: bool, quantize: str | None, calibration: Path | None, int8_io: bool,
            no_flex: bool, opset: int | None, atol: float | None, rtol: float | None,
            samples: int | None, no_validate: bool, seed: int, timeout: float,
            report_path: Path | None, as_json: bool) -> int:
    """Convert SOURCE to another format, run both, and compare them.

    Routes (chains of converters) are tried in order until one makes an artifact that runs and
    matches SOURCE; every route tried is reported. The artifact is written atomically.

    \b
    Examples:
      portkit convert model.pt --to tflite --input x:1x3x64x64 --report r.json
      portkit convert model.pt2 --to onnx -o out/model.onnx
      portkit convert model.pt --to tflite --route torch.onnx-legacy+onnx2tf --input x:1x3x64x64
      portkit convert model.onnx --to tflite --inputs sample.npz --atol 1e-3
      portkit convert model.keras --to onnx --opset 17
      portkit convert saved_model/ --signature serving_default --to tflite --no-flex
      portkit convert model.keras --to tflite --quantize int8 --calibration calib.npz --int8-io
      portkit convert model.tflite --to onnx
    """
    from portkit import api
    from portkit.validators.render import convert_tables

    report = api.convert(
        source, to, output, inputs=inputs, inputs_file=inputs_file, route=route, atol=atol,
        rtol=rtol, validate=not no_validate, seed=seed, timeout=timeout,
        progress=_progress(not as_json), signature=signature, trust_model=trust_model,
        quantize=quantize, calibration=calibration, int8_io=int8_io, no_flex=no_flex,
        opset=opset, samples=samples,
    )
    if report_path:
        report.write_json(report_path)
    if as_json:
        click.echo(report.to_json())
    else:
        console = _console()
        for table in convert_tables(report):
            console.print(table)
    return int(report.exit_code)


@cli.command(context_settings=CONTEXT)
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.option("--timeout", type=float, default=300, show_default=True,
              help="Seconds loading the model may take in its worker.")
@click.option("--signature", metavar="NAME", help="SavedModel signature to describe.")
@click.option("--trust-model", is_flag=True,
              help="Load Keras Lambda layers and custom objects (they run Python code).")
def inspect(model: Path, as_json: bool, timeout: float, signature: str | None,
            trust_model: bool) -> int:
    """Show MODEL's format, size, inputs, outputs and op counts; for a .tflite, the mobile
    report: ops needing the Flex runtime, quantization parameters, precision and layout.

    \b
    Examples:
      portkit inspect model.tflite
      portkit inspect model.onnx --json
      portkit inspect saved_model/ --signature serving_default
    """
    import dataclasses
    import json

    from portkit import api
    from portkit.validators.render import inspect_tables
    from portkit.validators.report import plain

    result = api.inspect(model, timeout=timeout, signature=signature, trust_model=trust_model)
    if as_json:
        click.echo(json.dumps(plain(dataclasses.asdict(result)), indent=2))
    else:
        console = _console()
        for table in inspect_tables(result):
            console.print(table)
    return 0


@cli.command(context_settings=CONTEXT)
@click.option("--dir", "folder", type=click.Path(path_type=Path), default=Path("portkit-demo"),
              show_default=True, help="Where to write the sample model and its artifact.")
@click.option("--to", "to", default="tflite", show_default=True, help="Target format.")
@click.option("--report", "report_path", type=click.Path(path_type=Path),
              help="Also write the JSON report to this file.")
def demo(folder: Path, to: str, report_path: Path | None) -> int:
    """Build a small CNN (batch norm, residual, pooling), save it as TorchScript, convert it,
    and show the full report.

    \b
    Examples:
      portkit demo
      portkit demo --to onnx --dir /tmp/demo
    """
    from portkit import api
    from portkit.fixtures import FIXTURES
    from portkit.validators.render import convert_tables

    fixture = FIXTURES["cnn"]
    folder.mkdir(parents=True, exist_ok=True)
    step = _progress(True)
    with step(f"Building the sample model {fixture.name} ({fixture.exercises})"):
        source = fixture.save(folder)
    report = api.convert(source, to, inputs=fixture.input_flags, progress=step)
    if report_path:
        report.write_json(report_path)
    console = _console()
    for table in convert_tables(report):
        console.print(table)
    return int(report.exit_code)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn errors into one line and an exit code."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        code = cli.main(args=args, prog_name="portkit", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("portkit: interrupted", err=True)
        code = 130
    except click.ClickException as e:
        e.show()
        code = ExitCode.INVALID_INPUT
    except PortkitError as e:
        if debug:
            traceback.print_exc()
            click.echo(getattr(e, "traceback", ""), err=True)
        click.echo(f"portkit: error: {' '.join(str(e).split())}", err=True)
        code = e.exit_code
    except Exception as e:  # noqa: BLE001 - anything else is our bug
        if debug:
            traceback.print_exc()
        click.echo(f"portkit: internal error ({type(e).__name__}: {e}); this is a bug: please "
                   "report it with the output of --debug", err=True)
        code = ExitCode.INTERNAL
    sys.exit(int(code or 0))
