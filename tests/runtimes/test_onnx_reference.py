"""The ONNX reference evaluator as the reference of last resort (``onnx-reference``)."""

from __future__ import annotations

import numpy as np
import pytest

from portkit.errors import InvalidModelError
from portkit.formats import Format
from portkit.options import Feed
from portkit.runtimes import registry, tasks
from tests.legacy_onnx import legacy_model, stored


def test_it_runs_what_onnxruntime_refuses() -> None:
    model = legacy_model("test_BatchNorm2d_eval")
    with pytest.raises(InvalidModelError, match="onnxruntime could not load it"):
        registry.get("onnxruntime").load(model, Format.ONNX)
    runtime, session = registry.load_source(model, Format.ONNX)
    assert runtime.name == "onnx-reference"
    # IR version 3 lists the weights among the graph's inputs; only the data input is one.
    assert [(s.name, s.shape, s.dtype) for s in session.inputs] == [("0", (2, 3, 6, 6), "float32")]
    x = stored(model, "input")
    (got,) = session.run({"0": x}).values()
    np.testing.assert_allclose(got, stored(model, "output"), rtol=1e-5, atol=1e-6)
    assert session.op_counts() == {"BatchNormalization": 1}


def test_it_is_never_an_artifact_runtime_and_onnxruntime_stays_first(converted) -> None:
    assert [r.name for r in registry.for_format(Format.ONNX)] == ["onnxruntime"]
    runtime, _ = registry.load_source(converted("cnn", "pt2", "onnx"), Format.ONNX)
    assert runtime.name == "onnxruntime"


def test_the_reference_names_its_runtime() -> None:
    model = legacy_model("test_AvgPool2d")
    ref = tasks.reference(str(model), Format.ONNX, Feed())
    assert ref.runtime == "onnx-reference"
    assert ref.inputs[0].shape == (2, 3, 6, 6)


def test_a_file_nothing_loads_gets_every_runtimes_reason(tmp_path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07not a model")
    with pytest.raises(InvalidModelError, match="onnxruntime could not.*onnx-reference could not"):
        registry.load_source(bad, Format.ONNX)
