"""What converted before converts now (issue 25): a Keras input's other name, a dynamic batch
no route can keep, dimensions the model doesn't name, an ``If`` a constant or a fixed shape
decides, and a stateful audio model fed its own state over eight calls."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import portkit
from portkit.errors import ExitCode
from portkit.fixtures import keras_models
from portkit.formats import Format
from portkit.formats.tflite import mobile_report
from portkit.options import Feed
from portkit.policies import KindHints
from portkit.runtimes.tasks import reference
from portkit.runtimes.worker import Pool
from portkit.specs import parse_input_flag
from tests.convert.test_tensorflow_edges import convert_json

torch = pytest.importorskip("torch")

AUDIO = "onnx_stateful_audio"


@pytest.fixture(scope="module")
def gru(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The Keras GRU text classifier saved as ``.keras``, and its input tensor's name
    (``model.inputs[0].name``: ``keras_tensor_N``, not its layer's ``input_layer``)."""
    model = keras_models.gru_text()
    path = tmp_path_factory.mktemp("gru") / "gru.keras"
    model.save(str(path))
    return path, model.inputs[0].name


def test_keras_gru_converts_with_its_batch_fixed_and_the_report_says_why(
        gru: tuple[Path, str], tmp_path: Path) -> None:
    code, report, err = convert_json(gru[0], "--to", "tflite", "-o", tmp_path / "m.tflite")
    assert code == 0, err + json.dumps(report.get("routes_tried"), indent=1)
    fixed = report["fixed"]
    assert fixed["sizes"] == [["batch", 1]] and fixed["require"] == "--dim batch=1..64"
    assert any("tf.TensorListReserve" in r for r in fixed["refusals"]), fixed
    # Every route was tried with the batch dynamic first, then with it fixed.
    tried = [(a["route"], a["fixed"], a["ok"]) for a in report["routes_tried"]]
    assert tried[0] == ("tflite-converter", [], False) and tried[-1][1:] == (["batch"], True)
    assert mobile_report(tmp_path / "m.tflite").inputs[0].shape == (1, 20)


def test_keras_gru_with_the_batch_asked_dynamic_still_exits_3_naming_the_refusal(
        gru: tuple[Path, str], tmp_path: Path) -> None:
    code, report, _err = convert_json(gru[0], "--to", "tflite", "-o", tmp_path / "m.tflite",
                                      "--dim", "batch=1..8")
    assert code == ExitCode.CONVERSION_FAILED
    assert report["fixed"] is None and not any(a["fixed"] for a in report["routes_tried"])
    errors = " ".join(a["error"] for a in report["routes_tried"])
    assert "tf.TensorListReserve" in errors and "(input_layer: batch)" in errors


def test_keras_inputs_saved_under_the_tensor_name_feed_the_input(
        gru: tuple[Path, str], tmp_path: Path) -> None:
    source, tensor_name = gru
    assert tensor_name.startswith("keras_tensor")
    inputs = tmp_path / "in.npz"
    np.savez(inputs, **{tensor_name: np.random.default_rng(0).integers(0, 50, (3, 20),
                                                                      dtype=np.int32)})
    code, report, err = convert_json(source, "--to", "onnx", "-o", tmp_path / "m.onnx",
                                     "--inputs", inputs)
    assert code == 0, err
    assert report["notes"] == [f"input 'input_layer' read from the array {tensor_name!r} of "
                               "--inputs, by position (no array is named 'input_layer')"]
    assert report["inputs_from"] == "--inputs in.npz (3 samples)"


def test_audio_converts_over_8_steps_with_no_branch_left(saved_models, workers: Pool,
                                                         tmp_path: Path) -> None:
    # --input names neither the state's shape nor any dimension: the state takes the batch.
    out = tmp_path / "vad.tflite"
    report = portkit.convert(saved_models(AUDIO, "onnx"), "tflite", out, consts=["sr=16000"],
                             inputs=["input:1x512"], steps=8, workers=workers)
    assert report.exit_code == ExitCode.OK, [a.error for a in report.routes_tried]
    assert report.steps == 8 and report.state == {"state": "stateN"}
    assert [(s.name, s.shape) for s in report.inputs] == [("input", (1, 512)),
                                                          ("state", (2, 1, 128))]
    assert "1 of 1 If decided by them inlined; 1 If left" in report.preparation.detail
    assert report.fixed is not None and dict(report.fixed.sizes) == {"batch": 1, "input.1": 512}
    ops = mobile_report(out).op_counts
    assert "IF" not in ops and ops.get("WHILE") == 1, ops  # the LSTM's own loop, one step
    assert report.checks and all(c.passed for c in report.checks)


def test_audio_at_8_khz_takes_the_other_branch(saved_models, workers: Pool,
                                               tmp_path: Path) -> None:
    # The 8 kHz branch frames 256 samples: had the 16 kHz branch been kept, 1x256 would not
    # reshape into its 4 frames of 128, and the reference (run at 8 kHz) would not match.
    out = tmp_path / "vad8k.tflite"
    report = portkit.convert(saved_models(AUDIO, "onnx"), "tflite", out, consts=["sr=8000"],
                             inputs=["input:1x256"], workers=workers)
    assert report.exit_code == ExitCode.OK, [a.error for a in report.routes_tried]
    assert [t.shape for t in mobile_report(out).inputs if t.name.endswith("input")] == [(1, 256)]
    ops = mobile_report(out).op_counts
    assert "IF" not in ops and ops.get("WHILE") == 1, ops  # the LSTM's own loop, one step


def test_a_size_the_source_refuses_is_dropped_with_a_note(saved_models) -> None:
    # input.1 stays dynamic by default, but the source frames 512 samples only: the sizes
    # derived from it are not validated, and a note names each and the source's error.
    ref = reference(str(saved_models(AUDIO, "onnx")), Format.ONNX,
                    Feed((parse_input_flag("input:1x512"),), constants={"sr": 16000}))
    assert ref.sizes == ()  # every other size refused: the example size alone
    assert len(ref.notes) == 2 and all("the source itself raised" in n for n in ref.notes)
    assert ref.notes[0].startswith("not validated at input 3x511, state 2x3x128:")
    assert "Reshape" in ref.notes[0]


class _TiedScores(torch.nn.Module):
    """Fifty scores that differ by 1e-3 of a shared part: int8 weights reorder them, while the
    vector's direction (cosine 0.99998) is kept."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(16, 50, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(1, 16).expand(50, 16) + 1e-3 * torch.randn(50, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def test_a_ranking_failure_with_a_passing_cosine_spends_no_other_route(workers: Pool,
                                                                       tmp_path: Path) -> None:
    report = portkit.convert(_TiedScores().eval(), "tflite", tmp_path / "q.tflite",
                             inputs=["x:1x16"], quantize="dynamic", workers=workers)
    assert report.exit_code == ExitCode.PARITY_FAILED
    [attempt] = report.routes_tried  # litert-torch; torch.onnx+onnx2tf+... not tried
    assert "the other routes not tried: only the ranking of classes failed" in attempt.error
    assert "though its cosine 1.0000 passes" in attempt.error
    assert "--output-kind output_0=embedding" in attempt.error


def test_a_text_encoder_reference_knows_its_token_ids_and_hidden_width(saved_models) -> None:
    ref = reference(str(saved_models("text_encoder", "pt2")), Format.EXPORTED_PROGRAM, Feed())
    assert ref.hints == KindHints(tokens=True, hidden=16)
