"""The tiny Llama directory and its three artifacts, converted once per test run by the CLI
(``--max-seq 64 --prefill 8,32 --prompt ...``, and ``--quantize MODE`` where a test asks for
one), shared by every test of this folder that needs an artifact rather than an export of its
own; the same for the trained tiny Llama (``save_decoder(..., trained=True)``) where a test
asks for it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from portkit.fixtures.decoders import save_decoder
from tests.conftest import made_once, run_cli, shared_folder

PROMPT = "once upon a time there was a little robot"
SUFFIXES = {"onnx": ".onnx", "tflite": ".tflite", "executorch": ".pte"}


@dataclass(frozen=True)
class Converted:
    """A conversion of a tiny Llama: its directory, the artifact and the JSON report."""

    src: Path
    artifact: Path
    report: dict[str, Any]


@pytest.fixture(scope="session")
def llama_converted(tmp_path_factory: pytest.TempPathFactory
                    ) -> Callable[..., Converted]:
    """``llama_converted(target, quantize=None, trained=False)``: the tiny Llama (its trained
    twin with ``trained``) converted to ``target``, with ``--quantize quantize`` if given (each
    directory and each conversion made once per run)."""
    folder = shared_folder(tmp_path_factory, "llama-converted")

    def get(target: str, quantize: str | None = None, trained: bool = False) -> Converted:
        name = "tinyllama-trained" if trained else "tinyllama"
        src = folder / name
        with made_once(src):
            if not (src / "config.json").exists():
                save_decoder("llama", src, trained=trained)
        mode = f"-{quantize}" if quantize else ""
        out = folder / f"{name}{mode}{SUFFIXES[target]}"
        report = folder / f"{target}{mode}{'-trained' if trained else ''}.json"
        flags = ("--quantize", quantize) if quantize else ()
        with made_once(out):
            if not report.exists():
                done = run_cli("convert", src, "--to", target, "-o", out, "--max-seq", "64",
                               "--prefill", "8,32", "--prompt", PROMPT, "--report", report,
                               *flags)
                assert done.returncode == 0, done.stderr + done.stdout
        return Converted(src, out, json.loads(report.read_text()))

    return get
