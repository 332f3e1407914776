"""The TensorFlow runtime on Keras files and SavedModel signatures (in-process)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from portkit.errors import InvalidModelError
from portkit.formats import Format
from portkit.options import LoadOptions
from portkit.runtimes.tensorflow import TensorflowRuntime
from portkit.specs import TensorSpec, make_inputs

Saved = Callable[[str, str], Path]


def test_keras_and_its_savedmodel_agree(saved_models: Saved) -> None:
    runtime = TensorflowRuntime()
    keras = runtime.load(saved_models("keras_cnn", "keras"), Format.KERAS)
    saved = runtime.load(saved_models("keras_cnn", "savedmodel"), Format.SAVEDMODEL)
    assert [s.name for s in keras.inputs] == [s.name for s in saved.inputs] == ["image"]
    assert keras.inputs[0].shape == (None, 32, 32, 3)
    assert [s.name for s in keras.outputs] == ["logits"]  # Keras names; the SavedModel: output_0
    feeds = make_inputs([TensorSpec("image", (2, 32, 32, 3))], seed=0)
    np.testing.assert_allclose(keras.run(feeds)["logits"], saved.run(feeds)["output_0"],
                               atol=1e-6)
    assert keras.op_counts()["Conv2D"] == 2  # Keras models count layers


def test_signature_is_chosen_and_unknown_ones_are_listed(saved_models: Saved) -> None:
    runtime = TensorflowRuntime()
    path = saved_models("two_signatures", "savedmodel")
    assert [s.name for s in runtime.load(path, Format.SAVEDMODEL).inputs] == ["x"]
    scaled = runtime.load(path, Format.SAVEDMODEL, options=LoadOptions(signature="scaled"))
    assert sorted(s.name for s in scaled.inputs) == ["scale", "x"]
    with pytest.raises(InvalidModelError, match="no signature 'nope'; it has .*scaled"):
        runtime.load(path, Format.SAVEDMODEL, options=LoadOptions(signature="nope"))


def test_gpu_device_runs_like_the_cpu(saved_models: Saved) -> None:
    runtime = TensorflowRuntime()
    if "gpu" not in runtime.devices():
        pytest.skip("no GPU visible to TensorFlow on this machine")
    path = saved_models("keras_cnn", "savedmodel")
    cpu = runtime.load(path, Format.SAVEDMODEL, "cpu")
    gpu = runtime.load(path, Format.SAVEDMODEL, "gpu")
    feeds = make_inputs([TensorSpec("image", (1, 32, 32, 3))], 0)
    np.testing.assert_allclose(cpu.run(feeds)["output_0"], gpu.run(feeds)["output_0"], atol=1e-4)
