"""The torch runtime reads TorchScript ``forward`` arguments from the schema: a Python scalar
(``sr: int``) is an input it feeds as a scalar, and reports so ``--const`` can bind it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from portkit.errors import UsageError
from portkit.formats import Format
from portkit.runtimes.tasks import split_constants

pytest.importorskip("torch")


def test_scalar_arguments_are_reported_and_fed_as_python_scalars(saved_models) -> None:
    from portkit.runtimes.torch import TorchRuntime

    session = TorchRuntime().load(Path(saved_models("sample_rate", "torchscript")),
                                  Format.TORCHSCRIPT)
    assert [s.describe() for s in session.inputs] == ["x: ? ?", "sr: scalar int64"]
    assert session.scalar_args == {"sr": "int"}
    x = np.random.default_rng(0).standard_normal((1, 16)).astype(np.float32)
    wide = session.run({"x": x, "sr": np.array(16000)})["output_0"]
    narrow = session.run({"x": x, "sr": np.array(8000)})["output_0"]
    assert (wide >= 0).all() and np.abs(wide - narrow).max() > 0.1  # relu branch vs tanh

    fed, fixed = split_constants("m.pt", session, {"sr": 16000})
    assert [s.name for s in fed] == ["x"]
    assert fixed["sr"].shape == () and fixed["sr"].dtype == np.int64 and fixed["sr"] == 16000
    with pytest.raises(UsageError, match=r"m\.pt: forward takes sr: int.*--const sr="):
        split_constants("m.pt", session, {})
