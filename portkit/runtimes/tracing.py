"""Helpers for ``Session.trace``: writing each intermediate tensor to its own ``.npy`` file as it
is computed, so a trace never holds more than the tensors the runtime itself keeps alive."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from portkit.traces import TracedTensor


class TensorWriter:
    """Writes traced tensors to ``folder`` as ``00000.npy``, ``00001.npy``... (numbered, since
    framework names hold ``/`` and ``:``) and records them in topological order.

    Attributes:
        tensors: What was written so far, in the order it was written.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.tensors: list[TracedTensor] = []
        self._names: set[str] = set()

    def __contains__(self, name: str) -> bool:
        return name in self._names

    def add(self, name: str, value: np.ndarray, *, node: str, op_type: str,
            inputs: tuple[str, ...] = (), origin: str = "", node_id: str = "") -> TracedTensor:
        """Save ``value`` (sample 0) and record it.

        Args:
            name: The tensor's name in its framework (unique within the trace).
            value: Its value; object, string and complex arrays are not traced values and
                should not be passed.
            node, op_type, inputs, origin, node_id: As in ``TracedTensor``; ``inputs`` not
                yet traced (weights, constants) are dropped.

        Returns:
            The recorded tensor.
        """
        array = np.asarray(value)
        file = self.folder / f"{len(self.tensors):05d}.npy"
        np.save(file, array, allow_pickle=False)
        traced = TracedTensor(name, node, op_type, tuple(i for i in inputs if i in self._names),
                              tuple(int(d) for d in array.shape), array.dtype.name, str(file),
                              origin, node_id)
        self.tensors.append(traced)
        self._names.add(name)
        return traced


def traceable(value: object) -> bool:
    """Whether a value is a numeric or boolean array worth tracing."""
    return isinstance(value, np.ndarray) and value.dtype.kind in "biuf"
