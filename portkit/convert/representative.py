"""What a converted artifact is compared on: without ``--inputs``, a quantized artifact is
judged on samples of ``--calibration`` held back from calibration (as many as its policy
compares over), never on the ones it was calibrated on; random inputs only when nothing
representative was given, and the report says which."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from portkit.options import ConvertJob
from portkit.runtimes.tasks import Reference


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
