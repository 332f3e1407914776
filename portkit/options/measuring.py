"""How artifacts are timed (``Budget``) and judged on labelled data (``--eval``:
``Evaluation``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from portkit.bounds import MAX_ACCURACY_DROP, MIN_RUNS, MIN_SECONDS, WARMUP, Bound
from portkit.errors import UsageError
from portkit.formats.arrays import read_arrays
from portkit.specs import LABELS, labels_in, refuse_nonfinite


@dataclass(frozen=True)
class Budget:
    """How long to measure latency.

    Attributes:
        warmup: Untimed runs after the first.
        min_runs: Timed runs at least.
        min_seconds: Timed seconds at least.
        max_runs: Timed runs at most (a guard for very fast models).
    """

    warmup: int = 5
    min_runs: int = 30
    min_seconds: float = 1.0
    max_runs: int = 100_000

    def __post_init__(self) -> None:
        """Refuse the values ``--warmup``, ``--min-runs`` and ``--min-seconds`` refuse."""
        WARMUP.check(self.warmup)
        MIN_RUNS.check(self.min_runs)
        MIN_SECONDS.check(self.min_seconds)
        Bound("max_runs", 1, integer=True).check(self.max_runs)


@dataclass(frozen=True)
class Evaluation:
    """``--eval``: task accuracy on labelled samples, the source's against the artifact's.

    Attributes:
        file: An ``.npz`` of the model's inputs (as ``--inputs``) and ``labels``, each sample's
            class index (integers, shape (samples,)).
        output: The classifier output whose argmax is the prediction (None: the only output).
        max_drop: The largest drop in top-1 accuracy (source minus artifact, a share 0-1) that
            passes (``--max-accuracy-drop``); None: the accuracies are only reported.
    """

    file: Path
    output: str | None = None
    max_drop: float | None = None

    def __post_init__(self) -> None:
        """Refuse the values ``--max-accuracy-drop`` refuses."""
        if self.max_drop is not None:
            MAX_ACCURACY_DROP.check(self.max_drop)


def evaluation(eval_data: str | Path | None, eval_output: str | None = None,
               max_accuracy_drop: float | None = None, *, validate: bool = True, steps: int = 1,
               allow_nonfinite: bool = False) -> Evaluation | None:
    """``--eval``, ``--eval-output`` and ``--max-accuracy-drop``, checked before any work: the
    file's labels (``specs.labels_in``) and its inputs' values are read now.

    Raises:
        UsageError: ``--eval-output`` or ``--max-accuracy-drop`` without ``--eval``; ``--eval``
            with ``--no-validate`` or ``--steps``; a missing file, bad labels, labels that no
            input's sample count fits, or inputs holding NaN/inf (without ``allow_nonfinite``).
    """
    if eval_data is None:
        for flag, value in (("--eval-output", eval_output),
                            ("--max-accuracy-drop", max_accuracy_drop)):
            if value is not None:
                raise UsageError(f"{flag} is for --eval data.npz (inputs and {LABELS})")
        return None
    if not validate:
        raise UsageError("--eval runs the artifact on labelled samples: drop --no-validate")
    if steps != 1:
        raise UsageError(f"--eval scores one call per sample: drop --steps {steps}")
    path = Path(eval_data)
    if not path.is_file():
        raise UsageError(f"--eval {eval_data}: no such file; give an .npz of the model's inputs "
                         f"and {LABELS}")
    where = f"--eval {eval_data}"
    arrays = read_arrays(str(path), "--eval")
    labels = labels_in(arrays, where)
    for name, array in arrays.items():
        if name == LABELS:
            continue
        if not allow_nonfinite:
            refuse_nonfinite(where, name, array)
        _refuse_label_count(where, len(labels), name, array)
    return Evaluation(path, eval_output, max_accuracy_drop)


def _refuse_label_count(where: str, labels: int, name: str, array: np.ndarray) -> None:
    """Refuse, before any conversion, labels no sample count of ``array`` fits: an array holds
    one sample, or one per index of its first axis (``specs.load_inputs_file``), so several
    labels need that many there.

    Raises:
        UsageError: ``labels`` > 1 and ``array``'s first axis is not that long.
    """
    if labels > 1 and (array.ndim == 0 or array.shape[0] != labels):
        samples = array.shape[0] if array.ndim else 1
        raise UsageError(f"{where}: {labels} {LABELS} for {samples} sample"
                         f"{'s' * (samples != 1)} ({name!r} has shape {array.shape}, its "
                         "samples on the first axis): give one class index per sample")
