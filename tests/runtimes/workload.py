"""Functions the worker tests run in a worker process."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import time
from typing import Any

from portkit.errors import UsageError


def echo(value: Any) -> Any:
    return value


def raise_usage(message: str) -> None:
    raise UsageError(message)


def divide(a: int, b: int) -> float:
    return a / b


def segfault() -> None:
    ctypes.string_at(0)


def hang_with_child(pid_file: str) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open(pid_file, "w") as f:
        f.write(str(child.pid))
    time.sleep(600)


def environment() -> dict[str, str]:
    return dict(os.environ)


def allocate(megabytes: int) -> int:
    import numpy as np

    block = np.ones(megabytes * 2**20, dtype=np.uint8)
    return int(block.sum())


def pid() -> int:
    return os.getpid()


def sleep(seconds: float) -> None:
    time.sleep(seconds)
