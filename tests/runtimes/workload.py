"""Functions the worker tests run in a worker process (``@task``s, as every worker target)."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import time
from typing import Any

from portkit.errors import UsageError
from portkit.runtimes.worker import task


@task
def echo(value: Any) -> Any:
    return value


@task
def raise_usage(message: str) -> None:
    raise UsageError(message)


@task
def divide(a: int, b: int) -> float:
    return a / b


@task
def segfault() -> None:
    ctypes.string_at(0)


@task
def hang_with_child(pid_file: str) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open(pid_file, "w") as f:
        f.write(str(child.pid))
    time.sleep(600)


@task
def environment() -> dict[str, str]:
    return dict(os.environ)


@task
def allocate(megabytes: int) -> int:
    import numpy as np

    block = np.ones(megabytes * 2**20, dtype=np.uint8)
    return int(block.sum())


@task
def pid() -> int:
    return os.getpid()


@task
def sleep(seconds: float) -> None:
    time.sleep(seconds)


@task
def raise_bare() -> None:
    """A framework's error without a message, raised from one that has one."""
    try:
        {}["missing key"]
    except KeyError as e:
        raise RuntimeError() from e
