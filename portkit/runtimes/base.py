"""The runtime contract: a Runtime loads a model file into a Session that runs numpy feeds.

``Runtime.load`` checks the format and device, then calls the subclass's ``_load``;
``Session.run`` checks the feeds against the declared inputs, then calls ``_run``. Runtimes
register themselves by decorator; ``portkit.runtimes.registry`` finds them per format.
"""

from __future__ import annotations

import abc
import contextlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np

from portkit.errors import InternalError, InvalidModelError, PortkitError, UsageError
from portkit.formats import Format
from portkit.options import LoadOptions
from portkit.profiles import OpTime
from portkit.specs import TensorSpec
from portkit.traces import TracedTensor


class Session(abc.ABC):
    """A loaded model, ready to run.

    Attributes:
        inputs: What it takes, in order (a Python scalar argument as a 0-d tensor).
        outputs: What it returns (names may be unknown until it runs).
        scalar_args: Inputs it takes as Python scalars, not tensors (TorchScript ``sr: int``),
            by name -> type (``int``, ``float``, ``bool``, or what else the schema says): no
            seeded value suits them, so they must be bound with ``--const``.
    """

    def __init__(self, inputs: list[TensorSpec], outputs: list[TensorSpec],
                 scalar_args: dict[str, str] | None = None) -> None:
        self.inputs = inputs
        self.outputs = outputs
        self.scalar_args = dict(scalar_args or {})

    runtime_name = "this runtime"  # set by Runtime.load, for error messages

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model once.

        Args:
            feeds: One array per declared input, by name.

        Returns:
            The outputs by name, in the model's output order.

        Raises:
            InternalError: ``feeds`` does not name exactly the declared inputs.
        """
        self._check_feeds(feeds)
        return self._run(feeds)

    def _check_feeds(self, feeds: dict[str, np.ndarray]) -> None:
        missing = [s.name for s in self.inputs if s.name not in feeds]
        if missing or len(feeds) != len(self.inputs):
            raise InternalError(
                f"feeds {sorted(feeds)} do not match the model's inputs "
                f"{[s.name for s in self.inputs]}"
            )

    @abc.abstractmethod
    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run with checked feeds."""

    def trace(self, feeds: dict[str, np.ndarray], folder: Path) -> list[TracedTensor]:
        """Run the model once with every intermediate tensor exposed (``portkit debug``).

        Each tensor's value is written to ``folder`` as it is computed (``tracing.TensorWriter``),
        so memory holds no more than a plain run does.

        Args:
            feeds: One array per declared input, by name.
            folder: Where the ``.npy`` files go (created if missing).

        Returns:
            Every tensor computed, in topological order, the graph inputs first.

        Raises:
            InternalError: ``feeds`` does not name exactly the declared inputs.
            UsageError: This runtime can't expose intermediates.
        """
        self._check_feeds(feeds)
        return self._trace(feeds, Path(folder))

    def _trace(self, feeds: dict[str, np.ndarray], folder: Path) -> list[TracedTensor]:
        """Trace with checked feeds; runtimes that can expose intermediates override it."""
        raise UsageError(f"{self.runtime_name} can't expose a model's intermediate tensors, so "
                         "portkit debug can't trace it; convert the model to ONNX, TFLite or an "
                         "ExportedProgram (.pt2) and debug that")

    def traced_outputs(self) -> list[str]:
        """The traced names of the model's outputs, in output order (after ``trace``)."""
        return [s.name for s in self.outputs]

    def profile(self, feeds: dict[str, np.ndarray], runs: int) -> tuple[OpTime, ...]:
        """Time each op of the model over ``runs`` runs, with the runtime's own profiler.

        Args:
            feeds: One array per declared input, by name.
            runs: Profiled runs (after one untimed run).

        Returns:
            One row per op, worst first; median milliseconds per run and shares of their sum.

        Raises:
            InternalError: ``feeds`` does not name exactly the declared inputs.
            UsageError: This runtime has no profiler portkit can read.
        """
        self._check_feeds(feeds)
        return self._profile(feeds, max(1, runs))

    def _profile(self, feeds: dict[str, np.ndarray], runs: int) -> tuple[OpTime, ...]:
        """Profile with checked feeds; runtimes with a readable profiler override it."""
        raise UsageError(f"{self.runtime_name} has no per-op profiler portkit can read, so "
                         "--profile can't time its ops; profile the model's ONNX or TFLite "
                         "artifact (portkit bench MODEL.onnx --profile), or leave out --profile")

    def op_counts(self) -> dict[str, int]:
        """How many times each op occurs in the model (empty when the runtime can't tell)."""
        return {}

    def weight_shapes(self) -> list[tuple[int, ...]]:
        """The shapes of the model's weights (empty when the runtime can't tell): its hidden
        width, for ``policies.KindHints``."""
        return []


class Runtime(abc.ABC):
    """A framework that runs models of some formats on some devices."""

    name: ClassVar[str]
    formats: ClassVar[tuple[Format, ...]]
    all_devices: ClassVar[tuple[str, ...]] = ("cpu",)  # every device it could use anywhere
    # A reference of last resort: runs a source only when the runtimes before it refuse the
    # file, and never checks an artifact (``registry.load_source``).
    fallback: ClassVar[bool] = False

    def devices(self) -> list[str]:
        """Devices this runtime can use on this machine (``cpu`` always)."""
        return ["cpu"]

    def unavailable(self, device: str) -> str:
        """Why ``device`` (one of ``all_devices``) is not among ``devices()`` here."""
        return f"no {device.upper()} device visible to {self.name}"

    def load(self, path: Path, fmt: Format, device: str = "cpu",
             options: LoadOptions = LoadOptions()) -> Session:
        """Load a model.

        Args:
            path: The model file.
            fmt: Its format (from ``portkit.formats.sniff``).
            device: One of ``devices()``.
            options: Signature to use, and whether the file may run code on load.

        Returns:
            A session ready to run.

        Raises:
            InternalError: This runtime doesn't take ``fmt`` or ``device``.
            InvalidModelError: The framework could not load the file.
        """
        if fmt not in self.formats:
            raise InternalError(f"runtime {self.name} does not load {fmt.value} models")
        if device not in self.devices():
            raise InternalError(f"runtime {self.name} has no device {device!r} here")
        with self.load_errors(path, fmt):
            session = self._load(path, fmt, device, options)
        session.runtime_name = f"runtime {self.name}"
        return session

    @contextlib.contextmanager
    def load_errors(self, path: Path, fmt: Format) -> Iterator[None]:
        """Any framework error inside, as an InvalidModelError naming ``path``: a framework
        that refuses a file on load means a bad file."""
        try:
            yield
        except (PortkitError, InternalError):
            raise
        except Exception as e:  # noqa: BLE001
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise InvalidModelError(
                f"{path}: {self.name} could not load it as {fmt.value} ({type(e).__name__}: "
                f"{first}); check that the file is complete and was exported by a supported "
                "version"
            ) from None

    @abc.abstractmethod
    def _load(self, path: Path, fmt: Format, device: str, options: LoadOptions) -> Session:
        """Load a file whose format and device were checked."""


def count(names: list[str]) -> dict[str, int]:
    """An op histogram, most frequent first."""
    return dict(Counter(names).most_common())
