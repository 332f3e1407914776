"""The paths a conversion writes, checked before any work: ``-o`` (its suffix must fit
``--to``), where a failed artifact goes, ``--report``; none may be an input."""

from __future__ import annotations

from pathlib import Path

from portkit.errors import UsageError
from portkit.formats import Format
from portkit.io import Folder, Output, check_outputs, failed_path
from portkit.options import ConvertJob


def check_paths(job: ConvertJob) -> Path:
    """Check every path the conversion writes, before any work: ``-o`` (its suffix must fit
    ``--to``), where a failed artifact goes, ``--report``; none may be an input.

    Returns:
        Where the artifact goes: ``-o``, or beside the source with the target's suffix.

    Raises:
        UsageError: A path is refused (see ``portkit.io.check_outputs``).
    """
    src = job.source.absolute()
    out = job.output if job.output is not None else src.with_suffix(job.target.suffix)
    folder = Folder.REPLACED if job.target is Format.SAVEDMODEL else Folder.NEVER
    calibration = job.options.calibration
    flag = "-o" if job.output is not None else "-o (default: beside the source)"
    check_outputs(
        [Output(flag, out, folder),
         Output(f"{flag}'s failed artifact", failed_path(out) if job.validate else None, folder),
         Output("--report", job.report)],
        [job.source, job.feed.file, Path(calibration) if calibration else None,
         job.judgement.evaluation.file if job.judgement.evaluation else None])
    if job.output is not None:
        _check_suffix(out, job.target)
    return out


# What each target is, for the message of a suffix that does not fit it.
_WRITES = {Format.ONNX: "an ONNX model", Format.TFLITE: "a TFLite model",
           Format.TORCHSCRIPT: "a TorchScript model", Format.EXPORTED_PROGRAM: "an ExportedProgram",
           Format.SAVEDMODEL: "a SavedModel folder", Format.EXECUTORCH: "an ExecuTorch program"}


_MODEL_SUFFIXES = {x for f in Format for x in f.suffixes if x} | {".pb", ".pth", ".bin"}


def _check_suffix(out: Path, target: Format) -> None:
    """``-o``'s suffix fits ``--to``: ``.onnx`` for ONNX...; a SavedModel folder has no model
    file's suffix.

    Raises:
        UsageError: It does not; the message names the path to use.
    """
    suffix = out.suffix.lower()
    fits = suffix in target.suffixes if target.suffix else suffix not in _MODEL_SUFFIXES
    if not fits:
        what = _WRITES.get(target, f"a {target.value} model")
        to = "pt2" if target is Format.EXPORTED_PROGRAM else target.value
        raise UsageError(f"-o {out}: --to {to} writes {what}; name it "
                         f"{out.with_suffix(target.suffix)}")


