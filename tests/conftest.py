"""Shared test fixtures: sample models saved once per run, warm workers, and a CLI runner."""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import io
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from portkit.fixtures import FIXTURES
from portkit.runtimes.worker import Pool

# `make test` runs two test processes on two cores, each with warm workers: each framework's own
# pool of threads per process would spin against the other's (the trained CNN's forward in
# torch took 77 ms with two OpenMP threads under the suite's load, 1.8 ms with one). One thread
# each, for the workers too (they inherit it); what a model computes doesn't depend on it, and
# TFLite's cpu/cpu-1thread runs set their thread counts themselves.
for _threads in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
                 "TF_NUM_INTEROP_THREADS"):
    os.environ.setdefault(_threads, "1")


def shared_folder(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A folder every test process of this run shares (pytest-xdist's workers have their own
    base temp folders under one per run), so a sample model is made once per run, not once per
    process."""
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / name
    folder.mkdir(exist_ok=True)
    return folder


@contextlib.contextmanager
def made_once(folder: Path) -> Iterator[None]:
    """Held while what goes in ``folder`` is made: the first process makes it, the others wait
    and then find it made."""
    with open(folder.with_name(folder.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="session", autouse=True)
def fixture_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Trained fixture weights kept for every process of the run (the test processes and their
    workers): the trained CNN is trained once per run, not once per process."""
    from portkit.fixtures.trained import CACHE_ENV

    folder = shared_folder(tmp_path_factory, "fixture-cache")
    before = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(folder)
    yield folder
    if before is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = before


@pytest.fixture(scope="session")
def saved_models(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], Path]:
    """``saved_models(name, kind)``: a fixture model saved as ``torchscript`` or ``pt2`` (once
    per run)."""
    folder = shared_folder(tmp_path_factory, "models")
    cache: dict[tuple[str, str], Path] = {}

    def get(name: str, kind: str = "torchscript") -> Path:
        if (name, kind) not in cache:
            sub = folder / kind / name
            sub.mkdir(parents=True, exist_ok=True)
            done = sub / "saved-as.txt"  # the file the fixture saved, once it is complete
            with made_once(sub):
                if not done.exists():
                    done.write_text(str(FIXTURES[name].save(sub, kind)))
            cache[name, kind] = Path(done.read_text())
        return cache[name, kind]

    return get


@pytest.fixture(scope="session")
def workers() -> Pool:
    """Workers kept warm across the session's API calls (``workers=``) and the CLI commands
    ``run_cli`` runs in this process, as ``portkit check`` keeps them across cases: each
    framework is imported once per test process, not once per test."""
    return _cli_pool()


@pytest.fixture(scope="session")
def converted(saved_models: Callable[[str, str], Path], workers: Pool,
              tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str, str], Path]:
    """``converted(name, kind, target)``: a fixture model converted by its default route, once
    per session, for tests that need an artifact rather than a conversion."""
    import portkit

    folder = shared_folder(tmp_path_factory, "converted")
    cache: dict[tuple[str, str, str], Path] = {}

    def get(name: str, kind: str, target: str) -> Path:
        if (name, kind, target) not in cache:
            sub = folder / f"{name}-{kind}-{target}"
            sub.mkdir(exist_ok=True)
            out = sub / f"{name}-{kind}.{target}"
            with made_once(sub):
                if not out.exists():  # written atomically: there only once it passed
                    report = portkit.convert(saved_models(name, kind), target, out,
                                             inputs=FIXTURES[name].input_flags, workers=workers)
                    assert report.exit_code == 0, report.routes_tried
            cache[name, kind, target] = out
        return cache[name, kind, target]

    return get


def run_cli(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None,
            fresh: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``portkit ARGS`` as a user would and return its exit code, stdout and stderr.

    It runs in this process, its workers lent from one warm pool per test process
    (``portkit.runtimes.worker.lend``), so each framework is imported once per test process,
    not once per command; the CLI's own code (argument parsing, errors, exit codes, output) runs
    as it does in a terminal. With ``cwd``, ``env`` (variables added) or ``fresh``, it runs in
    a fresh interpreter instead: for what a process of its own shows (its environment, its
    directory, a worker started cold).
    """
    argv = [str(a) for a in args]
    if cwd is not None or env is not None or fresh:
        return subprocess.run([sys.executable, "-m", "portkit", *argv], cwd=cwd,
                              capture_output=True, text=True, timeout=900,
                              env={**os.environ, **(env or {})})
    from portkit.cli import main
    from portkit.runtimes.worker import lend

    out, err = io.StringIO(), io.StringIO()
    code: int | str | None = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            lend(_cli_pool()):
        try:
            main(argv)
        except SystemExit as e:
            code = e.code
    return subprocess.CompletedProcess(["portkit", *argv], int(code or 0), out.getvalue(),
                                       err.getvalue())


_POOLS: list[Pool] = []


def _cli_pool() -> Pool:
    """The warm pool ``run_cli`` lends its commands (one per test process, closed at exit)."""
    if not _POOLS:
        _POOLS.append(Pool().__enter__())
        atexit.register(_POOLS[0].__exit__, None, None, None)
    return _POOLS[0]
