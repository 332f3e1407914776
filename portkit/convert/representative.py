"""What a converted artifact is compared on: without ``--inputs``, a quantized artifact is
judged on samples of ``--calibration`` held back from calibration (as many as its policy
compares over), never on the ones it was calibrated on; random inputs only when nothing
representative was given, and the report says which. Held-back samples that carry no
variation (``degeneracy``: copies of one constant input, all zeros) prove nothing: the artifact
is judged again on seeded inputs in their range (``judged_on_seeded``), and passes only if it
passes on both."""

from __future__ import annotations

import dataclasses
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from portkit.formats import Format
from portkit.options import ConvertJob
from portkit.results import Attempt
from portkit.results.convert import Degenerate
from portkit.runtimes import registry as runtimes
from portkit.runtimes.context import RunContext
from portkit.runtimes.tasks import Reference
from portkit.validators.checks import Expected, check_runtime, why_failed
from portkit.validators.reference import run_reference

NEAR = 1e-5  # a float input whose values spread less than this share of their size is constant
FEW = 8  # samples are degenerate when at most one in FEW is distinct


def judged_on(job: ConvertJob) -> ConvertJob:
    """The job a quantized artifact is judged in: without ``--inputs``, on the last samples of
    ``--calibration`` (as many as the policy compares over), which are held back from
    calibration (dynamic and fp16 calibrate on none, and are judged on them all the same);
    ``--keep-float auto`` quantizes until the job's policy is met."""
    options, tolerance = job.options, job.judgement.tolerance
    if options.keep_float_auto:
        options = dataclasses.replace(options, judge=tolerance)
    if options.quantize and job.feed.file is None and job.validate \
            and options.calibration is not None:
        options = dataclasses.replace(options, holdout=tolerance.samples)
        feed = dataclasses.replace(job.feed, file=Path(options.calibration),
                                   held_back=tolerance.samples, flag="--calibration")
        return dataclasses.replace(job, feed=feed, options=options)
    return dataclasses.replace(job, options=options)


def described(job: ConvertJob, reference: Reference) -> str:
    """Where the inputs the artifact was compared on came from, in words."""
    first = reference.by_size()[0][1]  # the example size's (a dynamic model runs at more)
    count = (first.stop - first.start) // max(reference.steps, 1)
    if job.options.holdout:
        total = reference.file_samples
        mode = job.options.quantize
        if mode is not None and not mode.calibrated:
            return (f"the last {count} of {total} --calibration samples ({mode.value} "
                    "quantization calibrates on none)")
        return (f"the last {count} of {total} --calibration samples, held back (calibrated on "
                f"the first {total - count})")
    if job.feed.file is not None:
        return f"--inputs {job.feed.file.name} ({count} samples)"
    if job.options.quantize is not None:
        return (f"{count} seeded random inputs: nothing representative was given (pass --inputs "
                "with real samples)")
    return f"{count} seeded input(s)"


def degeneracy(samples: Sequence[Mapping[str, np.ndarray]]) -> str | None:
    """Why ``samples`` (one array per input each) can judge nothing, or None: their float
    inputs carry no variation. Degenerate: every float input holds one value in every sample
    (all zeros; equal up to float rounding), or the samples are copies of one, or of far fewer
    distinct ones than given (at most one in ``FEW``). Only float inputs count: an attention
    mask of ones or token type ids of zeros are constant by nature, so samples whose other
    inputs vary (token ids) are never degenerate, nor are a model's with no float input."""
    ranges = _ranges(samples)
    others = [n for n in (samples[0] if samples else ()) if n not in ranges]
    if not ranges or any(not np.array_equal(s[n], samples[0][n]) for s in samples
                         for n in others):
        return None
    count = len(samples)
    if not _varies(ranges):
        held = "; ".join(f"input {name!r} holds only " + ("zeros" if lo == hi == 0 else f"{lo:.4g}")
                         for name, (lo, hi, _c) in ranges.items())
        return held + (f", in all {count} samples" if count > 1 else "")
    distinct = len({b"".join(np.ascontiguousarray(v).tobytes() for v in s.values())
                    for s in samples})
    if count > 1 and distinct == 1:
        return f"all {count} samples are one (copies of a single input)"
    if distinct * FEW <= count:
        return f"only {distinct} distinct of {count} samples"
    return None


def seeded_samples(samples: Sequence[Mapping[str, np.ndarray]], seed: int
                   ) -> list[dict[str, np.ndarray]]:
    """As many seeded inputs as ``samples`` (sample ``i`` seeded ``seed + i``) to judge an
    artifact on when ``samples`` are degenerate: each float input that varies drawn uniformly
    over its range in them (a constant one, a mask, keeps its value); standard normal, as
    ``specs.make_inputs`` draws, when no float input varies; other inputs as the samples hold
    them."""
    ranges = _ranges(samples)
    spread = _varies(ranges)
    out = []
    for i, sample in enumerate(samples):
        rng = np.random.default_rng(seed + i)
        drawn = {}
        for name, value in sample.items():
            if name not in ranges:
                drawn[name] = value
                continue
            lo, hi, constant = ranges[name]
            if not spread:
                drawn[name] = rng.standard_normal(value.shape).astype(value.dtype)
            elif constant or not np.isfinite([lo, hi]).all():  # a mask; inf can't be spread
                drawn[name] = value
            else:
                drawn[name] = rng.uniform(lo, hi, value.shape).astype(value.dtype)
        out.append(drawn)
    return out


def judged_on_seeded(job: ConvertJob, source: tuple[Path, Format], reference: Reference,
                     attempt: Attempt, artifact: Path, stage: Path, ctx: RunContext
                     ) -> tuple[Attempt, Degenerate | None]:
    """The artifact ``convert`` chose, judged again when the held-back ``--calibration``
    samples it was judged on are degenerate (``degeneracy``): on as many ``seeded_samples``
    (written to ``stage``), under the same policy; the attempt fails, saying why and what to
    give, unless it passes there too. Nothing when it was judged on ``--inputs`` or seeded
    inputs, not validated or not converted, or is stateful (``--steps``).

    Returns:
        The attempt, and what was degenerate and how the seeded inputs judged it (or None).
    """
    if not (job.options.holdout and job.validate and attempt.converted) \
            or reference.steps != 1:
        return attempt, None
    names = [s.name for s in reference.inputs]
    samples = [{n: f[n] for n in names} for f in reference.feeds[reference.by_size()[0][1]]]
    why = degeneracy(samples)
    if why is None:
        return attempt, None
    why = f"the last {len(samples)} --calibration samples, held back to judge on: {why}"
    seeded = seeded_samples(samples, job.feed.seed)
    file = _write_npz(stage / "seeded.npz", {n: np.stack([s[n] for s in seeded]) for n in names})
    src, fmt = source
    feed = dataclasses.replace(job.feed, file=file, held_back=0, flag="seeded inputs")
    with ctx.progress(f"Running {src.name} on seeded inputs (the held-back --calibration "
                      "samples are degenerate)"):
        again = run_reference(src, fmt, feed, ctx, what=f"{src} on seeded inputs")
    expected = Expected(again, job.judgement.tolerance, job.judgement.per_output)
    checks = tuple(c for rt in runtimes.for_format(job.target)
                   for c in check_runtime(artifact, job.target, rt, expected, ctx,
                                          channels_last=attempt.channels_last)[0])
    passed = all(c.passed for c in checks)
    drawn = ("float inputs that vary drawn uniformly over their range in the held-back samples"
             if _varies(_ranges(samples)) else "float inputs drawn standard normal: the held-back samples have "
             "no range")
    record = Degenerate(why=why, seeded=f"{len(seeded)} seeded inputs (seed {job.feed.seed}; "
                        f"{drawn})", checks=checks, passed=passed)
    if passed:
        return attempt, record
    lines = "; ".join(line for c in checks if not c.passed for line in why_failed(c))
    error = (f"degenerate --calibration, so also judged on {len(seeded)} seeded inputs: "
             f"{lines}; give representative samples (real inputs the model will see)")
    return dataclasses.replace(attempt, passed=False,
                               error="; ".join(e for e in (attempt.error, error) if e)), record


def _ranges(samples: Sequence[Mapping[str, np.ndarray]]) -> dict[str, tuple[float, float, bool]]:
    """Each float input's lowest and highest value over ``samples``, and whether it is
    constant (its spread within ``NEAR`` of its magnitude; never with NaN or inf)."""
    found = {}
    for name, value in (samples[0].items() if samples else ()):
        if np.asarray(value).dtype.kind != "f":
            continue
        lo = min(float(np.min(s[name])) for s in samples)  # NaN when one holds NaN
        hi = max(float(np.max(s[name])) for s in samples)
        found[name] = (lo, hi, bool(np.isfinite([lo, hi]).all())
                       and hi - lo <= NEAR * max(abs(lo), abs(hi)))
    return found


def _varies(ranges: Mapping[str, tuple[float, float, bool]]) -> bool:
    """Whether some float input of ``_ranges`` is not constant."""
    return not all(constant for _lo, _hi, constant in ranges.values())


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """``arrays`` as an ``.npz`` at ``path`` (written member by member: an input may be called
    ``file``, which ``np.savez`` takes as its own argument)."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array),
                                          allow_pickle=False)
    return path
