"""The commands: parse options, call one library function, render the result. Every option is a
keyword argument of that function, passed through by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from portkit.cli import flags
from portkit.cli.app import CONTEXT, cli, emit, progress, show
from portkit.policies import Quantize


@cli.command(context_settings=CONTEXT)
@click.argument("source", type=click.Path(path_type=Path))
@flags.section(
    "Target and routes", "--to tflite -o out/model.tflite --optimize latency",
    click.option("--to", "to", required=True, metavar="FORMAT",
                 help="Target format: onnx, tflite, savedmodel, torchscript, pt2."),
    click.option("-o", "--output", type=click.Path(path_type=Path),
                 help="Artifact path (default: beside SOURCE with the target's suffix)."),
    click.option("--route", help="Force one route, e.g. litert-torch or torch.onnx+onnx2tf."),
    click.option("--optimize", type=click.Choice(["latency"]),
                 help="Try every route, time the artifacts that match against each other, and "
                      "keep the fastest (slower: every converter runs)."),
    click.option("--speed-check/--no-speed-check", default=None,
                 help="Time the artifact against the source's own runtime on this CPU (ONNX "
                      "Runtime, TensorFlow or torch) and warn when it is over 3x slower, naming "
                      "its slowest ops [default: on with --optimize latency]."),
    click.option("--no-flex", is_flag=True,
                 help="Fail (exit 3) rather than write a TFLite model needing the Flex "
                      "runtime."),
    click.option("--opset", type=flags.Number(flags.bounds.OPSET),
                 help="ONNX opset, one the route's ONNX converter writes (an opset no planned "
                      "route writes is refused, exit 2) [default: the converter's]."),
)
@flags.LOADING
@flags.shapes(flags.INPUT, flags.DIM, flags.STATIC, flags.SEQ_BUCKETS)
@flags.inputs()
@flags.section(
    "Quantization", "--quantize int8 --calibration calib.npz --keep-float auto",
    click.option("--quantize", type=click.Choice([m.value for m in Quantize]),
                 help="Quantize (TFLite, ExecuTorch); int8 and int16x8 need --calibration. "
                      "A transformer's int8 quantizes its linear layers, attention stays float "
                      "(--int8-io: every op). A language model takes dynamic (int8 weights) or "
                      "int4 (int4 weights, blocks of 32), for ONNX too."),
    click.option("--calibration", type=click.Path(path_type=Path),
                 help="Representative inputs (int8/int16x8 need them; dynamic/fp16 are judged "
                      "on them): an .npz (arrays by input name, samples on the first axis) or a "
                      "folder of .npy files. Without --inputs the last 32 (--samples) are held "
                      "back to validate on, never calibrated on."),
    click.option("--int8-io", is_flag=True,
                 help="With --quantize int8 --to tflite: every op integer, inputs and outputs "
                      "too (what NPUs run)."),
    click.option("--keep-float", metavar="auto|NAME,...", multiple=True,
                 help="Leave ops in float when quantizing: auto keeps the fewest that make the "
                      "artifact pass, or op names as the per-op error table gives them "
                      "(CONV_2D#3). Off by default (NPUs need every op quantized)."),
)
@flags.tolerances()
@flags.EVAL
@flags.generation()
@flags.section(
    "Output and run", "--report report.json --json --timeout 600",
    click.option("--no-validate", is_flag=True, help="Convert only; don't run and compare."),
    flags.timeout(),
    click.option("--report", "report_path", type=click.Path(path_type=Path),
                 help="Also write the JSON report to this file."),
    flags.JSON,
)
def convert(source: Path, to: str, no_validate: bool, report_path: Path | None, as_json: bool,
            **options: Any) -> int:
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
      portkit convert model.onnx --to tflite --speed-check
      portkit convert model.pt --to tflite --inputs sample.npz    # shapes from the file
      portkit convert model.pt --to onnx --input x:Nx3x32x32 --dim N=1..8   # a dynamic batch
      portkit convert model.keras --to tflite --static             # every dimension fixed
      portkit convert encoder.pt2 --to tflite --seq-buckets 16,64,128   # a signature per length
      portkit convert model.onnx --to tflite --scale-tol 1e-3
      portkit convert model.keras --to onnx --opset 17
      portkit convert saved_model/ --signature serving_default --to tflite --no-flex
      portkit convert model.keras --to tflite --quantize int8 --calibration calib.npz --int8-io
      portkit convert model.pt2 --to tflite --quantize int8 --calibration calib.npz --keep-float auto
      portkit convert model.keras --to tflite --quantize dynamic --eval eval.npz --max-accuracy-drop 0.01
      portkit convert model.tflite --to onnx
      portkit convert SmolLM2-135M/ --to tflite --prefill 32,128 --max-seq 512 --generate 32
    """
    from portkit import api
    from portkit.cli.render import convert_tables

    report = api.convert(source, to, validate=not no_validate, progress=progress(not as_json),
                         report=report_path, **options)
    emit(report, convert_tables, as_json)
    return int(report.exit_code)


@cli.command(context_settings=CONTEXT)
@click.argument("model", type=click.Path(path_type=Path))
@flags.JSON
@flags.timeout(300, "loading the model")
@flags.LOADING
def inspect(model: Path, as_json: bool, **options: Any) -> int:
    """Show MODEL's format, size, inputs, outputs and op counts; for a .tflite, the mobile
    report: ops needing the Flex runtime, quantization parameters, precision and layout.

    \b
    Examples:
      portkit inspect model.tflite
      portkit inspect model.onnx --json
      portkit inspect saved_model/ --signature serving_default
    """
    from portkit import api
    from portkit.cli.render import inspect_tables

    result = api.inspect(model, **options)
    emit(result, inspect_tables, as_json)
    return 0


@cli.command(context_settings=CONTEXT)
@click.argument("artifact", type=click.Path(path_type=Path), required=False)
@flags.section(
    "Reference", "--reference model.pt2 --save-bundle failure/, or --bundle failure/",
    click.option("--reference", type=click.Path(path_type=Path),
                 help="The model ARTIFACT was converted from; it is run as the reference."),
    click.option("--save-bundle", type=click.Path(path_type=Path),
                 help="Also write a reproducibility bundle (artifact, inputs, outputs, report, "
                      "versions, flags) to this folder."),
    click.option("--bundle", "bundle_dir", type=click.Path(path_type=Path),
                 help="Replay a bundle instead: rerun its artifact on its inputs and compare "
                      "with its stored reference outputs."),
)
@flags.section("Runtimes", "--runtime onnxruntime --profile", flags.RUNTIMES, flags.PROFILE)
@flags.LOADING
@flags.shapes()
@flags.inputs()
@flags.tolerances()
@flags.EVAL
@flags.generation(exports=False)
@flags.section("Output and run", "--json --timeout 600", flags.timeout(what="each step"),
               flags.JSON)
def validate(artifact: Path | None, reference: Path | None, bundle_dir: Path | None,
             as_json: bool, **options: Any) -> int:
    """Run ARTIFACT on every runtime and device that loads it and compare each with the
    reference. Devices not present here (CUDA, a GPU) are listed as skipped, with the reason.

    \b
    Examples:
      portkit validate model.tflite --reference model.pt2
      portkit validate model.onnx --reference model.pt --input x:1x3x224x224 --atol 1e-3
      portkit validate enc.tflite --reference enc.onnx --output-kind embedding=embedding
      portkit validate model.onnx --reference model.keras --runtime onnxruntime --json
      portkit validate model.tflite --reference model.pt2 --save-bundle failure/
      portkit validate --bundle failure/            # on another machine
      portkit validate model.tflite --reference model.pt2 --profile
    """
    from portkit import api
    from portkit.cli.render import validate_tables
    from portkit.errors import UsageError

    shown = progress(not as_json)
    if bundle_dir is not None:
        if artifact or reference or options["save_bundle"] or options["profile"]:
            raise UsageError("--bundle replays a bundle: give no ARTIFACT, --reference, "
                             "--save-bundle or --profile with it")
        report = api.replay(bundle_dir, runtimes=options["runtimes"], timeout=options["timeout"],
                            progress=shown)
    elif artifact is None or reference is None:
        raise UsageError("validate needs ARTIFACT and --reference SOURCE (or --bundle DIR)")
    else:
        report = api.validate(artifact, reference, progress=shown, **options)
    emit(report, validate_tables, as_json)
    return int(report.exit_code)


@cli.command(context_settings=CONTEXT)
@click.argument("artifact", type=click.Path(path_type=Path))
@flags.section(
    "Finding the divergence", "--reference model.pt2 --hops --overlay errors.json",
    click.option("--reference", required=True, type=click.Path(path_type=Path),
                 help="The model ARTIFACT was converted from; it is run as the source."),
    click.option("--overlay", type=click.Path(path_type=Path),
                 help="Also write each node's error as Model Explorer node data to this file "
                      "(model-explorer ARTIFACT --node_data_paths FILE colours the graph)."),
    click.option("--overlay-side", type=click.Choice(["artifact", "source"]),
                 default="artifact", show_default=True, help="The graph --overlay colours."),
    click.option("--hops", is_flag=True,
                 help="Also rerun the route that made ARTIFACT and debug each hop against the "
                      "previous (PyTorch -> ONNX, then ONNX -> TFLite); the hops' artifacts are "
                      "kept in ARTIFACT.hops/."),
    click.option("--route", help="With --hops: the route to rerun, e.g. torch.onnx+onnx2tf "
                                 "[default: the first portkit convert tries]."),
)
@flags.LOADING
@flags.shapes(flags.INPUT)
@flags.inputs(
    click.option("--inputs", "inputs_file", type=click.Path(path_type=Path),
                 help="An .npz of input arrays (by input name, or in order); its first sample "
                      "is used."),
    flags.SEED, flags.CONST)
@flags.tolerances(("scale_tol", "atol", "rtol", "min_cosine"), kinds=False)
@flags.section("Output and run", "--json --timeout 600", flags.timeout(what="each step"),
               flags.JSON)
def debug(artifact: Path, as_json: bool, **options: Any) -> int:
    """Find where ARTIFACT first goes wrong against the model it was converted from.

    Both run once with every intermediate tensor exposed (FX interpreter, ONNX Runtime, TFLite
    with all tensors preserved); the source's tensors are matched with the artifact's (names
    the converters kept, model outputs, then shape, NCHW/NHWC layout and value) and walked in
    topological order. The first divergence is the first matched pair outside the policy whose
    matched inputs all agree. Exit 0 when nothing diverges, 1 when something does.

    \b
    Examples:
      portkit debug model.onnx --reference model.pt2
      portkit debug model.tflite --reference model.onnx --json
      portkit debug model.tflite --reference model.pt2 --overlay errors.json
      portkit debug model.tflite --reference model.pt2 --hops --route torch.onnx+onnx2tf
      portkit debug model.tflite --reference model.pt --input x:1x3x224x224 --scale-tol 1e-3
    """
    from portkit import api
    from portkit.cli.render import debug_tables

    report = api.debug(artifact, progress=progress(not as_json), **options)
    emit(report, debug_tables, as_json)
    return int(report.exit_code)


@cli.command(context_settings=CONTEXT)
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@flags.RUNTIMES
@flags.INPUT
@click.option("--threads", type=flags.Number(flags.bounds.THREADS),
              help="CPU threads, 1-1024 [default: the runtime's; TFLite: cores].")
@click.option("--batch", type=flags.Number(flags.bounds.BATCH),
              help="Batch size to feed, >= 1 (replaces the first dimension).")
@click.option("--shape", "shapes", multiple=True, metavar="NAME:SHAPE",
              help="Time a model with dynamic dimensions at this input shape; repeat for "
                   "several sizes (the k-th --shape of each input named is size k; inputs "
                   "sharing a dimension follow).")
@click.option("--warmup", type=flags.Number(flags.bounds.WARMUP), default=5, show_default=True,
              help="Untimed runs.")
@click.option("--min-runs", type=flags.Number(flags.bounds.MIN_RUNS), default=30,
              show_default=True, help="Timed runs at least (>= 1).")
@click.option("--min-seconds", type=flags.Number(flags.bounds.MIN_SECONDS), default=1.0,
              show_default=True, help="Timed seconds at least.")
@flags.PROFILE
@click.option("--generate", type=flags.Number(flags.bounds.GENERATE), metavar="N",
              help="Language models (a Hugging Face directory and its ONNX, TFLite, .pte): "
                   "generate N tokens after a prompt of each --prefill length, in turns; prefill "
                   "and decode tokens/s, time to first token.")
@click.option("--prefill", metavar="LEN,...",
              help="With --generate: prompt lengths [default: 32].")
@click.option("--max-seq", type=flags.Number(flags.bounds.MAX_SEQ), metavar="N",
              help="With --generate: the source's cache length [default: 256].")
@click.option("--trust-model", is_flag=True,
              help="With --generate: let the source directory's own model code run.")
@flags.timeout(what="each measurement")
@flags.JSON
def bench(models: tuple[Path, ...], warmup: int, min_runs: int, min_seconds: float,
          as_json: bool, **options: Any) -> int:
    """Latency of MODELS on every runtime that loads them: cold start (load + first run), then
    warm-up and timed runs until both --min-runs and --min-seconds; p50/p90/p99, mean, CV,
    throughput and the worker's peak RSS, with p50 ratios against the first row.

    \b
    Examples:
      portkit bench model.onnx model.tflite
      portkit bench model.tflite --threads 1 --min-seconds 5
      portkit bench model.onnx --batch 8 --json
      portkit bench encoder.onnx encoder.tflite --shape ids:1x16 --shape ids:1x128
      portkit bench model.tflite --profile          # time per op, worst first
      portkit bench SmolLM2-135M/ model.onnx model.tflite model.pte --generate 64
    """
    from portkit import api
    from portkit.cli.render import bench_table, generation_table, profile_tables
    from portkit.options import Budget

    report = api.bench(models, budget=Budget(warmup, min_runs, min_seconds),
                       progress=progress(not as_json), **options)
    emit(report, lambda r: ([generation_table(r)] if r.generation
                            else [bench_table(r), *profile_tables(r)]), as_json)
    return 0


@cli.command(context_settings=CONTEXT)
@click.argument("config", type=click.Path(path_type=Path), default=Path("portkit.toml"))
@click.option("--shard", "shard_spec", type=flags.Shard(), metavar="K/N",
              help="Run only shard K of N (every case lands in exactly one shard).")
@click.option("-j", "--jobs", type=flags.Number(flags.bounds.JOBS), default=1,
              show_default=True, help="Model x target groups run in parallel (1-256).")
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
@click.option("--save-bundle", "save_bundles", type=click.Path(path_type=Path),
              help="Write a reproducibility bundle per model x target into this folder "
                   "(replay one with portkit validate --bundle DIR/MODEL-TARGET).")
@click.option("--list", "list_only", is_flag=True, help="Only list the cases (of --shard).")
@flags.timeout(what="each step")
def check(config: Path, json_path: Path | None, markdown_path: Path | None,
          junit_path: Path | None, list_only: bool, **options: Any) -> int:
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
    from portkit.cli.ci import to_junit, to_markdown
    from portkit.cli.render import check_tables
    from portkit.io import Folder, Output, append_text, atomic_write_text, check_outputs

    if list_only:
        for case in gate.shard(gate.cases(gate.load_config(config)), options["shard_spec"]):
            click.echo(case.id)
        return 0
    models = gate.load_config(config)
    summary = os.environ.get("GITHUB_STEP_SUMMARY") or None  # appended to, never replaced
    check_outputs(
        [Output("--json", json_path), Output("--markdown", markdown_path),
         Output("--junit", junit_path),
         Output("$GITHUB_STEP_SUMMARY", Path(summary) if summary else None),
         Output("--work-dir", gate.work_folder(config, options["work_dir"]), Folder.WRITTEN_INTO),
         Output("--save-bundle", options["save_bundles"], Folder.WRITTEN_INTO)],
        [config, *(p for m in models for p in (m.source, m.artifact))])
    report = gate.run(config, progress=progress(True), **options)
    markdown = to_markdown(report)
    for flag, path, text in (("--json", json_path, report.to_json() + "\n"),
                             ("--markdown", markdown_path, markdown),
                             ("--junit", junit_path, to_junit(report))):
        if path:
            atomic_write_text(path, text, flag)
    if summary:
        append_text(Path(summary), markdown, "$GITHUB_STEP_SUMMARY")
    show(check_tables(report))
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
    from portkit import api, options
    from portkit.cli.render import convert_tables
    from portkit.fixtures import FIXTURES
    from portkit.io import Folder, Output, check_outputs

    fixture = FIXTURES["cnn"]
    options.target(to)  # refused before building, as the outputs are (again with -o below)
    check_outputs([Output("--report", report_path), Output("--dir", folder, Folder.WRITTEN_INTO)])
    folder.mkdir(parents=True, exist_ok=True)
    step = progress(True)
    with step(f"Building the sample model {fixture.name} ({fixture.exercises})"):
        source = fixture.save(folder)
    report = api.convert(source, to, inputs=fixture.input_flags, progress=step,
                         report=report_path)
    show(convert_tables(report))
    return int(report.exit_code)
