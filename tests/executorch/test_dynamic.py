"""A dynamic batch (``torch.export.Dim("batch", min=1, max=8)``) becomes a ``.pte`` whose input
is bounded at 8: validated at three sizes, run here at a fourth; a batch beyond the bound is
the user's error (exit 2) naming the input and the bound, whether the source's range refuses it
first or the program itself does."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from portkit.fixtures import FIXTURES
from portkit.formats.pte import PteTensor, read_program
from portkit.specs import Dim, TensorSpec
from tests.conftest import run_cli
from tests.executorch.test_convert import (
    Converted,
    fresh_input,
    run_pte,
    scaled_err,
    to_pte,
)

Saved = Callable[[str, str], Path]
# The CNN fixture with a dynamic batch (the registered one is static).
CNN_BATCH = dataclasses.replace(
    FIXTURES["cnn"], name="cnn_batch",
    inputs=(TensorSpec("x", (1, 3, 32, 32), "float32", (Dim("batch", 1, 8), None, None, None)),))


@pytest.fixture(scope="module")
def dynamic(tmp_path_factory: pytest.TempPathFactory) -> Converted:
    """``portkit convert cnn_batch.pt2 --to executorch --report ...`` (once per run)."""
    return to_pte(tmp_path_factory, "cnn_batch-pt2", lambda folder: CNN_BATCH.save(folder, "pt2"))


def test_dynamic_batch_is_validated_at_three_sizes_and_runs_at_a_fourth(
        dynamic: Converted) -> None:
    assert dynamic.exit_code == 0, dynamic.stderr
    report = dynamic.report
    assert report["passed"] and report["route_name"] == "executorch-xnnpack"
    checks = report["checks"]
    assert {c["size"] for c in checks} == {"x 1x3x32x32", "x 3x3x32x32", "x 8x3x32x32"}
    assert all(c["passed"] and c["runtime"] == "executorch" for c in checks)
    ((output,),) = {tuple(o["name"] for o in c["outputs"]) for c in checks}
    assert output == "output_0"
    (method,) = read_program(dynamic.pte)
    assert method.inputs == (PteTensor((8, 3, 32, 32), "float32", bounded=True),)
    import torch

    for batch in (5, 8):
        x = fresh_input("cnn", batch)
        (got,) = run_pte(dynamic.pte, x)
        with torch.no_grad():
            ref = CNN_BATCH.module()(torch.from_numpy(x)).numpy()
        assert scaled_err(ref, got) <= 1e-4, batch


def test_a_batch_beyond_the_bound_is_exit_2_naming_it(dynamic: Converted,
                                                      tmp_path: Path) -> None:
    assert dynamic.exit_code == 0, dynamic.stderr
    # One sample (the extra leading axis) of batch 12: the source's own range refuses it.
    big = tmp_path / "big.npz"
    np.savez(big, x=fresh_input("cnn", 12)[None])
    done = run_cli("validate", dynamic.pte, "--reference", dynamic.source, "--inputs", big)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "input 'x' is 12 along batch, outside batch 1..8" in done.stderr
    # The program alone, timed at a batch beyond its bound: ExecuTorch's runtime would say
    # only "Attempted to resize a bounded tensor".
    done = run_cli("bench", dynamic.pte, "--batch", "12", "--warmup", "0", "--min-runs", "1")
    assert done.returncode == 2, done.stdout + done.stderr
    said = " ".join(done.stderr.split())
    assert "input_0: axis 0 is 12, beyond this program's bound of 8" in said, said


def test_a_reference_that_takes_any_batch_leaves_the_bound_to_the_program(
        dynamic: Converted, saved_models: Saved) -> None:
    assert dynamic.exit_code == 0, dynamic.stderr
    # Traced TorchScript takes any batch, so the .pte's own bound check is what refuses 12.
    done = run_cli("validate", dynamic.pte, "--reference", saved_models("cnn", "torchscript"),
                   "--input", "x:12x3x32x32")
    assert done.returncode == 2, done.stdout + done.stderr
    said = " ".join(done.stderr.split())
    assert "input_0: axis 0 is 12, beyond this program's bound of 8" in said, said
    assert "Traceback" not in done.stderr
