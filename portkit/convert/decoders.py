"""A language model converted and judged by generating: a Hugging Face causal-LM directory
exported with its key/value cache (``hf_to_onnx``, ``hf_to_tflite``, ``hf_to_executorch``), then
source and artifact each generate from the same prompt, the artifact fed its own cache
(``validators.generation``). Only an artifact whose tokens all agree is moved into ``-o``; one
that fails is kept beside it as ``NAME.failed.EXT``, as for every other model.

``--quantize dynamic`` (int8 weights) is carried to the exporter in ``Export.quantize``; the
artifact is then judged by the quantized generation policy (``policies.generation_policy``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import time
from pathlib import Path

from portkit.convert import outputs
from portkit.errors import ConversionError, PortkitError, UsageError
from portkit.formats import Format
from portkit.formats.hf import check_trust, read_hf
from portkit.io import atomic_replace, failed_path, staging_dir
from portkit.options import ConvertJob
from portkit.options.generation import LANGUAGE_MODEL_MODES, Export
from portkit.policies import generation_policy
from portkit.results import Attempt, ConvertReport, FileInfo, Hop, versions
from portkit.runtimes.context import RunContext
from portkit.runtimes.worker import task
from portkit.validators.generation import generation_check

# target -> (tool, "module:function(src, dst, export) -> detail"), one route per target.
EXPORTERS = {
    Format.ONNX: ("torch.onnx-cache", "portkit.convert.hf_to_onnx:export_onnx"),
    Format.TFLITE: ("litert-torch-generative", "portkit.convert.hf_to_tflite:export_tflite"),
    Format.EXECUTORCH: ("executorch-static-cache", "portkit.convert.hf_to_executorch:export_pte"),
}


@task
def export(target: Format, src: str, dst: str, export: Export) -> Hop:
    """Run ``target``'s decoder exporter on ``src`` into ``dst`` (in a worker)."""
    tool, where = EXPORTERS[target]
    module, name = where.split(":")
    started = time.perf_counter()
    detail = getattr(importlib.import_module(module), name)(Path(src), Path(dst), export)
    return Hop(source=Format.HUGGINGFACE, target=target, tool=tool,
               seconds=time.perf_counter() - started, detail=detail)


def convert(job: ConvertJob, ctx: RunContext) -> ConvertReport:
    """Export ``job.source`` (a causal-LM directory) to ``job.target`` with its cache, and
    judge it by generating (see the module's docstring).

    Raises:
        PortkitError: Bad arguments or directory, or the exporter failed (exit code on it).
    """
    started = time.perf_counter()
    src = job.source.absolute()
    model = read_hf(src, task=job.generation.task)
    check_trust(model, job.export.trust_model)
    if job.target not in EXPORTERS:
        raise UsageError(f"{src}: a language model converts to "
                         f"{', '.join(f.value for f in EXPORTERS)}, not {job.target.value}")
    # --quantize (ConvertOptions) carried to the exporter; a mode no decoder takes fails here.
    shape = dataclasses.replace(job.export, quantize=job.export.quantize or job.options.quantize)
    out = outputs.check_paths(job)
    tool, _ = EXPORTERS[job.target]
    # One warm exporter per target: litert-torch's import registers ops that break a later
    # torch.onnx export in the same process (No ONNX function found for litert_torch.mark_tensor).
    name = f"convert-from-huggingface-to-{job.target.value}"
    with contextlib.ExitStack() as stack:
        stage = stack.enter_context(staging_dir(out.absolute()))
        staged = stage / f"model{job.target.suffix}"
        weights = (f", {shape.quantize.value}: {LANGUAGE_MODEL_MODES[shape.quantize]}"
                   if shape.quantize else "")
        with ctx.progress(f"Exporting with {tool} (huggingface -> {job.target.value}, cache of "
                          f"{shape.max_seq} positions{weights})"):
            try:
                hop: Hop = ctx.pool.call(name, export, timeout=ctx.timeout,
                                         what=f"{tool} on {src.name}", target=job.target,
                                         src=str(src), dst=str(staged), export=shape)
            except UsageError:
                raise
            except PortkitError as e:
                ctx.pool.discard(name)
                raise ConversionError(f"{src}: {tool}: {e}", e.traceback) from None
        check = None
        policy = generation_policy(job.judgement.tolerance, shape.quantize)
        if job.validate:
            check = generation_check(src, model, staged, job.target, job.generation, shape,
                                     policy, job.feed, ctx)
        passed = check.passed if check is not None else False
        failed = job.validate and not passed
        shipped = failed_path(out) if failed else out
        atomic_replace(staged, shipped)
        attempt = Attempt(route=tool, converted=True, passed=passed, hops=(hop,),
                          error=None if passed or check is None else check.verdict,
                          generation=check)
    return ConvertReport(
        passed=passed, validated=job.validate, source=FileInfo(str(src), Format.HUGGINGFACE.value),
        target=job.target.value, artifact=FileInfo.of(shipped, job.target.value), route=(hop,),
        routes_tried=(attempt,), checks=(), inputs=(), tolerance=policy, seed=job.feed.seed,
        seconds=time.perf_counter() - started, versions=versions(),
        converter_seconds=hop.seconds, route_name=tool, reference_runtime="transformers",
        artifact_failed=failed, generation=check, quantize=shape.quantize)
