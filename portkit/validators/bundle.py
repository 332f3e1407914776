"""Reproducibility bundles: everything needed to replay a validation on another machine.

A bundle folder holds the artifact (copied), the inputs and the reference's outputs (``.npz``),
each runtime/device's outputs, the report, and a manifest with the tolerance, library versions,
devices and flags used. ``portkit validate --bundle DIR`` reruns the artifact on the inputs and
compares with the stored reference outputs: the reference model itself is not needed.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from portkit import schema
from portkit.errors import UsageError
from portkit.formats import Format
from portkit.io import (
    Folder,
    Output,
    atomic_replace,
    atomic_write_text,
    check_outputs,
    staging_dir,
)
from portkit.policies import KindHints, Tolerance
from portkit.results import FileInfo, ValidateReport, plain
from portkit.runtimes.tasks import Reference
from portkit.specs import TensorSpec

MANIFEST = "manifest.json"
# What ``load`` and ``checks.replay`` read of a manifest; other keys (versions, flags, devices)
# are records, and a newer portkit may add more.
_TOLERANCE = schema.from_hints(Tolerance)
_SHAPE = schema.Table({
    "artifact": str, "format": schema.OneOf(tuple(f.value for f in Format)),
    "reference": schema.from_hints(FileInfo), "reference_runtime": str,
    "inputs": schema.ListOf(schema.Table(
        {"name": str, "shape": schema.ListOf((int, None)), "dtype": str, "dims": object},
        required=("name", "shape", "dtype"))),
    "outputs": schema.ListOf(str), "samples": int, "tolerance": _TOLERANCE,
    "per_output": schema.MapOf(_TOLERANCE), "seed": int,
    "constants": schema.MapOf((bool, int, float)), "steps": int, "state": schema.MapOf(str),
    "sizes": schema.ListOf(schema.Row((str, int))), "hints": schema.from_hints(KindHints),
}, required=("artifact", "format", "reference", "inputs", "outputs", "samples", "tolerance",
             "per_output", "seed"), open=True)


def save(folder: Path, report: ValidateReport, ref: Reference,
         outputs: dict[str, tuple[dict[str, np.ndarray], ...]], artifact: Path) -> None:
    """Write a bundle, atomically (staged beside ``folder``, then moved into place)."""
    check_outputs([Output("--save-bundle", folder, Folder.REPLACED)])
    with staging_dir(folder.absolute(), "--save-bundle") as stage:
        root = stage / "bundle"
        (root / "artifact_outputs").mkdir(parents=True)
        copy = root / "artifact" / artifact.name
        copy.parent.mkdir()
        if artifact.is_dir():
            shutil.copytree(artifact, copy)
        else:
            shutil.copy2(artifact, copy)
        _save_samples(root / "inputs.npz", ref.feeds)
        _save_samples(root / "reference_outputs.npz", ref.outputs)
        for key, samples in outputs.items():
            _save_samples(root / "artifact_outputs" / f"{key}.npz", samples)
        atomic_write_text(root / "report.json", report.to_json() + "\n", "--save-bundle")
        manifest = {
            "artifact": f"artifact/{artifact.name}", "format": report.artifact.format,
            "reference": plain(dataclasses.asdict(report.reference)),
            "reference_runtime": ref.runtime,
            "inputs": plain([dataclasses.asdict(s) for s in ref.inputs]),
            "outputs": list(ref.outputs[0]), "samples": len(ref.feeds),
            "tolerance": plain(dataclasses.asdict(report.tolerance)),
            "per_output": {k: plain(dataclasses.asdict(v)) for k, v in report.per_output.items()},
            "seed": report.seed, "versions": report.versions, "flags": report.flags,
            "constants": dict(report.constants),  # --const: in inputs.npz, not fed to the artifact
            "steps": ref.steps, "state": dict(ref.state),  # --steps: the samples are unrolled
            "sizes": [list(s) for s in ref.sizes],  # a dynamic model's samples by size
            "hints": plain(dataclasses.asdict(ref.hints)),  # what guesses the outputs' kinds
            "devices": sorted({f"{c.runtime}/{c.device}" for c in report.checks if not c.skipped}),
        }
        atomic_write_text(root / MANIFEST, json.dumps(manifest, indent=2) + "\n",
                          "--save-bundle")
        atomic_replace(root, folder, "--save-bundle")


def _inside(folder: Path, name: str) -> Path:
    """The bundle's artifact, ``name`` in ``folder``: a bundle replays only what it holds.

    Raises:
        UsageError: ``name`` is absolute, climbs out (``..``) or leads out through a link.
    """
    path = folder.absolute() / name
    if Path(name).is_absolute() or ".." in Path(name).parts \
            or not path.resolve().is_relative_to(folder.resolve()):
        raise UsageError(f"--bundle {folder}: its manifest names the artifact {name!r}, outside "
                         "the bundle; a bundle replays only the artifact it holds (portkit "
                         "validate ... --save-bundle DIR writes one)")
    return path


def load(folder: Path) -> tuple[Path, Format, Reference, Tolerance, dict[str, Tolerance],
                                dict[str, Any]]:
    """Read a bundle: the artifact, its format, the stored reference, tolerances, manifest.

    Raises:
        UsageError: ``folder`` is not a readable bundle.
    """
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"--bundle {folder}: not a readable portkit bundle ({e}); make one with "
                         "portkit validate ... --save-bundle DIR") from None
    schema.check(manifest, _SHAPE, f"--bundle {folder}: {MANIFEST}", "not a readable portkit "
                 "bundle; make it again with portkit validate ... --save-bundle DIR", json=True)
    try:
        specs = tuple(TensorSpec(s["name"], tuple(s["shape"]), s["dtype"])
                      for s in manifest["inputs"])
        n = int(manifest["samples"])
        feeds = _load_samples(folder / "inputs.npz", [s.name for s in specs], n)
        outputs = _load_samples(folder / "reference_outputs.npz", manifest["outputs"], n)
        tol = Tolerance.from_plain(manifest["tolerance"])
        per_output = {k: Tolerance.from_plain(v) for k, v in manifest["per_output"].items()}
        artifact = _inside(folder, str(manifest["artifact"]))
        fmt = Format(manifest["format"])
        hints = KindHints(**manifest.get("hints", {}))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UsageError(f"--bundle {folder}: not a readable portkit bundle ({e}); make one with "
                         "portkit validate ... --save-bundle DIR") from None
    ref = Reference(f"bundle ({manifest.get('reference_runtime', '?')})", specs, feeds, outputs,
                    steps=int(manifest.get("steps", 1)), state=dict(manifest.get("state", {})),
                    sizes=tuple((str(label), int(n)) for label, n in manifest.get("sizes", ())),
                    hints=hints)
    return artifact, fmt, ref, tol, per_output, manifest


def _save_samples(path: Path, samples: tuple[dict[str, np.ndarray], ...]) -> None:
    np.savez(path, **{f"{i}/{name}": array for i, sample in enumerate(samples)
                      for name, array in sample.items()})


def _load_samples(path: Path, names: list[str], n: int) -> tuple[dict[str, np.ndarray], ...]:
    with np.load(path, allow_pickle=False) as data:
        return tuple({name: data[f"{i}/{name}"] for name in names} for i in range(n))
