"""The values each numeric flag takes, written once: the CLI's click types
(``portkit/cli/flags.py``), the library's options and jobs (``portkit.options``) and the CI
gate's ``portkit.toml`` (``portkit.gate.config``) all check a number against its ``Bound`` here,
so ``--timeout 0``, ``timeout=0`` and ``timeout = 0`` are refused alike, before any work.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from portkit.errors import UsageError


@dataclass(frozen=True)
class Bound:
    """The values one numeric flag (or ``portkit.toml`` key) takes, written once here and used by
    the CLI's click types, the library's jobs and the gate's config alike.

    Attributes:
        flag: The flag, as the CLI spells it (``--timeout``).
        low: The smallest value allowed (None: no floor).
        high: The largest value allowed (None: no ceiling).
        integer: Whole numbers only; otherwise any finite number.
        low_open: ``low`` itself is refused (``--timeout 0``).
        noun: What a value is, for messages (when not ``integer``).
    """

    flag: str
    low: float | None = None
    high: float | None = None
    integer: bool = False
    low_open: bool = False
    noun: str = "a finite number"

    def describe(self) -> str:
        """What the values are, for a message: ``an integer >= 1``, ``a number in [0, 1]``."""
        what = "an integer" if self.integer else self.noun

        def num(x: float) -> str:
            return str(int(x)) if self.integer else f"{x:g}"

        if self.low is not None and self.high is not None:
            return f"{what} in {'(' if self.low_open else '['}{num(self.low)}, {num(self.high)}]"
        if self.low is not None:
            return f"{what} {'>' if self.low_open else '>='} {num(self.low)}"
        if self.high is not None:
            return f"{what} <= {num(self.high)}"
        return what

    def allows(self, value: object) -> bool:
        """Whether ``value`` is one of the values (a bool is no number; NaN and infinities are
        never allowed)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if not math.isfinite(value) or (self.integer and not float(value).is_integer()):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or value <= self.high

    def check(self, value: Any, name: str | None = None) -> Any:
        """``value`` if allowed (an int when ``integer``).

        Args:
            value: The value given.
            name: What to call it in the message (default: the flag).

        Raises:
            UsageError: ``value`` is out of range, not finite, or not a number.
        """
        if not self.allows(value):
            raise UsageError(f"{name or self.flag} {value!r}: must be {self.describe()}")
        return int(value) if self.integer else value


MAX_SECONDS = 7 * 24 * 3600.0  # a week: longer limits overflow timers, and are no limit at all
# Each numeric flag's values, one place (the flags' --help, the API, portkit.toml).
TIMEOUT = Bound("--timeout", 0.0, MAX_SECONDS, low_open=True, noun="a number of seconds")
SEED = Bound("--seed", 0, 2**32 - 1, integer=True)  # numpy's seed range
SAMPLES = Bound("--samples", 1, 10_000, integer=True)
ATOL = Bound("--atol", 0.0)
RTOL = Bound("--rtol", 0.0)
SCALE_TOL = Bound("--scale-tol", 0.0)
MIN_COSINE = Bound("--min-cosine", -1.0, 1.0)
MIN_TOP1 = Bound("--min-top1", 0.0, 1.0)
MIN_TOP5 = Bound("--min-top5", 0.0, 1.0)
THREADS = Bound("--threads", 1, 1024, integer=True)
BATCH = Bound("--batch", 1, 2**31 - 1, integer=True)  # TFLite dimensions are int32
WARMUP = Bound("--warmup", 0, 1_000_000, integer=True)
MIN_RUNS = Bound("--min-runs", 1, 1_000_000, integer=True)
MIN_SECONDS = Bound("--min-seconds", 0.0, MAX_SECONDS, noun="a number of seconds")
JOBS = Bound("--jobs", 1, 256, integer=True)
OPSET = Bound("--opset", 1, 1_000, integer=True)  # the routes' converters narrow it further
P50_REGRESSION = Bound("p50_regression", 0.0)
GENERATE = Bound("--generate", 1, 1_000_000, integer=True)  # greedy tokens after the prompt
MAX_SEQ = Bound("--max-seq", 2, 2**20, integer=True)  # a cache's positions
MAX_ACCURACY_DROP = Bound("--max-accuracy-drop", 0.0, 1.0)  # a share of the samples, not points

MEMORY_ENV = "PORTKIT_MEMORY_LIMIT_MB"


def memory_limit_mb() -> int:
    """A worker's memory limit: ``$PORTKIT_MEMORY_LIMIT_MB``, else 80% of physical memory.

    Raises:
        UsageError: ``$PORTKIT_MEMORY_LIMIT_MB`` is not a whole number of MB >= 1.
    """
    value = os.environ.get(MEMORY_ENV)
    if value:
        if not value.strip().isdigit() or int(value) < 1:
            raise UsageError(f"{MEMORY_ENV}={value!r}: must be a whole number of MB >= 1")
        return int(value)
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.8) // 2**20


def max_array_bytes() -> int:
    """The most array data portkit reads from one ``--inputs``, ``--calibration`` or ``--eval``
    file: a quarter of a worker's memory limit (``memory_limit_mb``). The data is read in the
    CLI process (checked for NaN/inf) and again in the worker that runs the source, which casts
    it (a copy), splits it into samples and sends them on (another), beside the model: four
    copies of a file fit a worker. Raised with ``$PORTKIT_MEMORY_LIMIT_MB``.
    """
    return memory_limit_mb() * 2**20 // 4


def parse_shard(spec: str) -> tuple[int, int]:
    """``--shard K/N`` as ``(K, N)``, 1 <= K <= N.

    Raises:
        UsageError: Not ``K/N`` of whole numbers with 1 <= K <= N.
    """
    try:
        k, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise UsageError(f"--shard {spec}: expected K/N, e.g. 2/3") from None
    if not 1 <= k <= n:
        raise UsageError(f"--shard {spec}: K and N must be whole numbers with 1 <= K <= N, "
                         "e.g. 2/3")
    return k, n
