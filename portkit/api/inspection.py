"""``portkit.inspect``: what a model file declares, read in a worker."""

from __future__ import annotations

from pathlib import Path

from portkit.bounds import TIMEOUT
from portkit.formats import sniff
from portkit.options import LoadOptions
from portkit.results import FileInfo, Inspection, ModelInfo
from portkit.runtimes import tasks, worker
from portkit.safety import refuse_unloadable


def inspect(path: str | Path, *, timeout: float = worker.DEFAULT_TIMEOUT,
            signature: str | None = None, trust_model: bool = False) -> Inspection:
    """Describe a model file: format, inputs, outputs and op counts (loaded in a worker); for a
    ``.tflite``, its mobile report (Flex ops, quantization, layout).

    Raises:
        UsageError: ``timeout`` is not a number of seconds above 0.
        PortkitError: The file is missing, unknown or cannot be loaded.
    """
    TIMEOUT.check(timeout)
    src = Path(path).absolute()
    fmt = sniff(src)
    refuse_unloadable(src, fmt)
    info: ModelInfo = worker.call(tasks.describe, timeout=timeout, what=str(src), path=str(src),
                                  fmt=fmt, options=LoadOptions(signature, trust_model))
    return Inspection(str(src), FileInfo.of(src, fmt.value).size_bytes, info)


