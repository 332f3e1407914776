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
      portkit validate model.tflite --reference model.pt2
      portkit bench model.onnx model.tflite
      portkit check portkit.toml --junit junit.xml

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
@click.option("--optimize", type=click.Choice(["latency"]),
              help="Try every route, time the artifacts that match against each other, and "
                   "keep the fastest (slower: every converter runs).")
@click.option("--signature", metavar="NAME",
              help="SavedModel signature to convert (default: serving_default).")
@click.option("--trust-model", is_flag=True,
              help="Load models that run code or touch files: Keras Lambda layers and custom objects, SavedModel file ops.")
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
@click.option("--min-cosine", type=float, help="Lowest cosine similarity that passes.")
@click.option("--top-k-agreement", type=float,
              help="Lowest top-1 agreement (0-1) for classifier-like outputs.")
@click.option("--no-validate", is_flag=True, help="Convert only; don't run and compare.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of generated inputs.")
@click.option("--timeout", type=float, default=900, show_default=True,
              help="Seconds each step (load, convert, run) may take in its worker.")
@click.option("--report", "report_path", type=click.Path(path_type=Path),
              help="Also write the JSON report to this file.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report instead of tables.")
def convert(source: Path, to: str, output: Path | None, inputs: tuple[str, ...],
            inputs_file: Path | None, route: str | None, optimize: str | None,
            signature: str | None,
            trust_model: bool, quantize: str | None, calibration: Path | None, int8_io: bool,
            no_flex: bool, opset: int | None, atol: float | None, rtol: float | None,
            samples: int | None, min_cosine: float | None, top_k_agreement: float | None,
            no_validate: bool, seed: int, timeout: float,
            report_path: Path | None, as_json: bool) -> int:
    """Convert SOURCE to another format, run both, and compare them.

    Routes (chains of converters) are tried in order until one makes an artifact that runs and
    matches SOURCE; every route tried is reported. The artifact is written atomically. With
    --optimize latency every route runs and the fastest matching artifact is kept.

    \b
    Examples:
      portkit convert model.pt --to tflite --input x:1x3x64x64 --report r.json
      portkit convert model.pt2 --to onnx -o out/model.onnx
      portkit convert model.pt --to tflite --route torch.onnx-legacy+onnx2tf --input x:1x3x64x64
      portkit convert model.pt2 --to tflite --optimize latency
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
        opset=opset, samples=samples, min_cosine=min_cosine, top_k_agreement=top_k_agreement,
        optimize=optimize,
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
              help="Load models that run code or touch files: Keras Lambda layers and custom objects, SavedModel file ops.")
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
@click.argument("artifact", type=click.Path(path_type=Path), required=False)
@click.option("--reference", type=click.Path(path_type=Path),
              help="The model ARTIFACT was converted from; it is run as the reference.")
@click.option("--save-bundle", type=click.Path(path_type=Path),
              help="Also write a reproducibility bundle (artifact, inputs, outputs, report, "
                   "versions, flags) to this folder.")
@click.option("--bundle", "bundle_dir", type=click.Path(path_type=Path),
              help="Replay a bundle instead: rerun its artifact on its inputs and compare with "
                   "its stored reference outputs.")
@click.option("--runtime", "runtimes_", multiple=True, metavar="NAME",
              help="Only these runtimes (repeat): onnxruntime, tflite, tensorflow, torch.")
@click.option("--input", "inputs", multiple=True, metavar="NAME:SHAPE[:DTYPE]",
              help="Input shape the reference doesn't store. Repeat per input.")
@click.option("--inputs", "inputs_file", type=click.Path(path_type=Path),
              help="An .npz of inputs (samples on an extra leading axis).")
@click.option("--atol", type=float, help="Absolute tolerance [default: 1e-4].")
@click.option("--rtol", type=float, help="Relative tolerance [default: 1e-3].")
@click.option("--min-cosine", type=float, help="Lowest cosine similarity that passes.")
@click.option("--top-k-agreement", type=float,
              help="Lowest top-1 agreement (0-1) for classifier-like outputs.")
@click.option("--samples", type=int, help="Inputs to compare on [default: 1].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of generated inputs.")
@click.option("--signature", metavar="NAME", help="SavedModel signature of the reference.")
@click.option("--timeout", type=float, default=900, show_default=True,
              help="Seconds each step may take in its worker.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report instead of tables.")
def validate(artifact: Path | None, reference: Path | None, save_bundle: Path | None,
             bundle_dir: Path | None, runtimes_: tuple[str, ...], inputs: tuple[str, ...],
             inputs_file: Path | None, atol: float | None, rtol: float | None,
             min_cosine: float | None, top_k_agreement: float | None, samples: int | None,
             seed: int, signature: str | None, timeout: float, as_json: bool) -> int:
    """Run ARTIFACT on every runtime and device that loads it and compare each with the
    reference. Devices not present here (CUDA, a GPU) are listed as skipped, with the reason.

    \b
    Examples:
      portkit validate model.tflite --reference model.pt2
      portkit validate model.onnx --reference model.pt --input x:1x3x224x224 --atol 1e-3
      portkit validate model.onnx --reference model.keras --runtime onnxruntime --json
      portkit validate model.tflite --reference model.pt2 --save-bundle failure/
      portkit validate --bundle failure/            # on another machine
    """
    from portkit import api
    from portkit.errors import UsageError
    from portkit.validators.render import validate_tables

    if bundle_dir is not None:
        if artifact or reference or save_bundle:
            raise UsageError("--bundle replays a bundle: give no ARTIFACT, --reference or "
                             "--save-bundle with it")
        report = api.replay(bundle_dir, runtimes_=runtimes_, timeout=timeout,
                            progress=_progress(not as_json))
    elif artifact is None or reference is None:
        raise UsageError("validate needs ARTIFACT and --reference SOURCE (or --bundle DIR)")
    else:
        report = api.validate(
            artifact, reference, runtimes_=runtimes_, inputs=inputs, inputs_file=inputs_file,
            atol=atol, rtol=rtol, min_cosine=min_cosine, top_k_agreement=top_k_agreement,
            samples=samples, seed=seed, timeout=timeout, signature=signature,
            save_bundle=save_bundle, progress=_progress(not as_json))
    if as_json:
        click.echo(report.to_json())
    else:
        console = _console()
        for table in validate_tables(report):
            console.print(table)
    return int(report.exit_code)


@cli.command(context_settings=CONTEXT)
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--runtime", "runtimes_", multiple=True, metavar="NAME",
              help="Only these runtimes (repeat).")
@click.option("--input", "inputs", multiple=True, metavar="NAME:SHAPE[:DTYPE]",
              help="Input shape a model doesn't store. Repeat per input.")
@click.option("--threads", type=int, help="CPU threads [default: the runtime's; TFLite: cores].")
@click.option("--batch", type=int, help="Batch size to feed (replaces the first dimension).")
@click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True,
              help="Untimed runs.")
@click.option("--min-runs", type=click.IntRange(min=1), default=30, show_default=True,
              help="Timed runs at least.")
@click.option("--min-seconds", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Timed seconds at least.")
@click.option("--timeout", type=float, default=900, show_default=True,
              help="Seconds each measurement may take.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def bench(models: tuple[Path, ...], runtimes_: tuple[str, ...], inputs: tuple[str, ...],
          threads: int | None, batch: int | None, warmup: int, min_runs: int,
          min_seconds: float, timeout: float, as_json: bool) -> int:
    """Latency of MODELS on every runtime that loads them: cold start (load + first run), then
    warm-up and timed runs until both --min-runs and --min-seconds; p50/p90/p99, mean, CV,
    throughput and the worker's peak RSS, with p50 ratios against the first row.

    \b
    Examples:
      portkit bench model.onnx model.tflite
      portkit bench model.tflite --threads 1 --min-seconds 5
      portkit bench model.onnx --batch 8 --json
    """
    from portkit import api
    from portkit.validators.latency import Budget
    from portkit.validators.render import bench_table

    report = api.bench(models, runtimes_=runtimes_, inputs=inputs, threads=threads, batch=batch,
                       budget=Budget(warmup, min_runs, min_seconds), timeout=timeout,
                       progress=_progress(not as_json))
    if as_json:
        click.echo(report.to_json())
    else:
        _console().print(bench_table(report))
    return 0


@cli.command(context_settings=CONTEXT)
@click.argument("config", type=click.Path(path_type=Path), default=Path("portkit.toml"))
@click.option("--shard", "shard_spec", metavar="K/N",
              help="Run only shard K of N (every case lands in exactly one shard).")
@click.option("-j", "--jobs", type=int, default=1, show_default=True,
              help="Model x target groups run in parallel.")
@click.option("--baseline", type=click.Path(path_type=Path),
              help="A previous run's JSON: fail on p50 regressions beyond p50_regression, or "
                   "on a case that passed there and fails now.")
@click.option("--json", "json_path", type=click.Path(path_type=Path),
              help="Write the JSON report here (the next run's --baseline).")
@click.option("--markdown", "markdown_path", type=click.Path(path_type=Path),
              help="Write the Markdown summary here (also appended to $GITHUB_STEP_SUMMARY).")
@click.option("--junit", "junit_path", type=click.Path(path_type=Path),
              help="Write JUnit XML here: one test case per model x target x runtime.")
@click.option("--work-dir", type=click.Path(path_type=Path),
              help="Where artifacts go [default: .portkit-check beside CONFIG].")
@click.option("--save-bundle", "bundles", type=click.Path(path_type=Path),
              help="Write a reproducibility bundle per model x target into this folder "
                   "(replay one with portkit validate --bundle DIR/MODEL-TARGET).")
@click.option("--list", "list_only", is_flag=True, help="Only list the cases (of --shard).")
@click.option("--timeout", type=float, default=900, show_default=True,
              help="Seconds each step may take in its worker.")
def check(config: Path, shard_spec: str | None, jobs: int, baseline: Path | None,
          json_path: Path | None, markdown_path: Path | None, junit_path: Path | None,
          work_dir: Path | None, bundles: Path | None, list_only: bool, timeout: float) -> int:
    """Run the CI gate in CONFIG (default ./portkit.toml): convert each model to each target,
    validate on each runtime, time it, and judge tolerances and latency budgets. Exit 0 only
    when every case passed.

    \b
    Examples:
      portkit check examples/portkit.toml --junit junit.xml --markdown summary.md
      portkit check --json run.json && portkit check --baseline run.json
      portkit check --shard 2/3 -j 2
    """
    import os

    from portkit import gate
    from portkit.io import atomic_write_text
    from portkit.validators.ci import to_junit, to_markdown
    from portkit.validators.render import check_tables

    if list_only:
        for case in gate.shard(gate.cases(gate.load_config(config)), shard_spec):
            click.echo(case.id)
        return 0
    report = gate.run(config, shard_spec=shard_spec, jobs=jobs, baseline=baseline,
                      work_dir=work_dir, save_bundles=bundles, timeout=timeout,
                      progress=_progress(True))
    markdown = to_markdown(report)
    for path, text in ((json_path, report.to_json() + "\n"), (markdown_path, markdown),
                       (junit_path, to_junit(report))):
        if path:
            atomic_write_text(path, text)
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as summary:
            summary.write(markdown)
    console = _console()
    for table in check_tables(report):
        console.print(table)
    return report.exit_code


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
