"""Bad input around dynamic dimensions, fed to the paths that refuse it."""

from __future__ import annotations

import pytest

from portkit import api
from portkit.cli.app import main
from portkit.errors import ConversionError, UsageError
from portkit.runtimes.torch_export import export_program
from portkit.specs import Dim, TensorSpec


def test_a_module_without_input_shapes_is_refused_naming_the_flag() -> None:
    import torch

    with pytest.raises(UsageError, match=r"convert\(module, \.\.\.\): it stores no input "
                                         r"shapes; pass --input NAME:SHAPE .*x:Nx3x224x224"):
        api.convert(torch.nn.Linear(4, 2), "onnx")


def test_a_module_that_fixes_a_dimension_said_dynamic_fails_the_export() -> None:
    import torch

    class FixedBatch(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.reshape(2, -1)  # the batch is 2, whatever the input says

    spec = TensorSpec("x", (2, 4), "float32", (Dim("N", 1, 8), None))
    with pytest.raises(ConversionError, match=r"m: torch.export can't keep x axis 0 \(N 1..8\) "
                                              r"dynamic: .*pass --static"):
        export_program(FixedBatch(), [spec], "m")


def test_a_bundle_replay_takes_no_profile(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["validate", "--bundle", "b", "--profile"])
    assert exit_.value.code == 2
    assert "--bundle replays a bundle: give no ARTIFACT, --reference, --save-bundle or " \
           "--profile with it" in capsys.readouterr().err


def test_onnx2tf_failing_on_dynamic_dimensions_names_them_and_suggests_static(
        saved_models, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import onnx2tf

    from portkit.convert import _onnx2tf

    def fails(**kwargs):  # as onnx2tf's op handlers fail on a shape they can't infer
        assert kwargs["shape_hints"] == ["x:1,3,16,16"]
        raise ValueError("Dimension -1 must be >= 0\nmore lines")

    monkeypatch.setattr(onnx2tf, "convert", fails)
    monkeypatch.chdir(tmp_path)
    spec = TensorSpec("x", (1, 3, 16, 16), "float32", (Dim("batch", 1, 8), None, None, None))
    with pytest.raises(ConversionError, match=r"onnx2tf can't keep the source's dynamic "
                                              r"dimensions dynamic \(x: batch\): it failed on "
                                              r"this model with them dynamic \(ValueError: "
                                              r"Dimension -1 must be >= 0\); pass --static to "
                                              r"convert at the example sizes \(x 1x3x16x16\)"):
        _onnx2tf.run(saved_models("onnx_dynamic_cnn", "onnx"), [spec])
