"""``portkit debug`` end to end, on real frameworks: the labelled broken corpus, a tampered conv
seen from either side of a conversion, a clean artifact, ``--hops``."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from portkit import api
from portkit.debug.report import DebugReport
from portkit.fixtures import FIXTURES
from portkit.runtimes.worker import Pool, task
from tests.conftest import run_cli
from tests.schema import assert_schema
from tests.validators.corpus import BY_NAME, judge, perturb_conv

CNN = FIXTURES["cnn"].input_flags

# Broken corpus cases -> what debug must name: the source op that broke (a substring of its
# aten op), or for a tampered conv the artifact's Conv node. The ones marked slow (the segmenter
# cases' 256x256 maps among them) repeat what the others show (run with -m slow).
BROKEN = {
    "cumsum-onnx2tf": "cumsum", "fmod-onnx2tf": "fmod", "roll-legacy-onnx2tf": "roll",
    "pad-legacy-onnx2tf": "pad", "cnn-x1000-conv-1.01": "Conv",
    "flip-onnx2tf": "flip", "align-corners-onnx2tf": "upsample_bilinear2d",
    "unfold-legacy-onnx2tf": "im2col", "strided-slice-legacy-onnx2tf": "slice",
    "cnn-x0.001-conv-1.01": "Conv", "upsample-conv-1.01": "Conv",
    "segmenter-expand-litert": "expand", "segmenter-conv-1.01": "Conv",
}
# Cases whose broken op's output is like no artifact tensor (cosine < 0.9), so it stays
# unmatched: the divergence is the first matched tensor after it, fed by the named one, which
# agrees (litert-torch's concatenation of an expanded 1x1 map, fused into the next conv).
AFTER = ("segmenter-expand-litert",)
FAST = ("cumsum-onnx2tf", "fmod-onnx2tf", "pad-legacy-onnx2tf", "cnn-x1000-conv-1.01")


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in FAST else pytest.mark.slow)
                                  for n in BROKEN])
def test_debug_names_the_op_that_broke(name: str, workers: Pool, tmp_path: Path) -> None:
    case = BY_NAME[name]
    report, _, source = judge(case, tmp_path, workers)
    assert report.exit_code == 1 and report.artifact is not None
    artifact = Path(report.artifact.path) if case.perturb == 1.0 else tmp_path / (
        f"{case.name}.{case.target}")
    found = api.debug(artifact, source, inputs=case.inputs, workers=workers)
    first = found.first_divergence
    assert found.exit_code == 1 and first is not None, case.why
    if case.perturb != 1.0:  # the tampered conv, by its ONNX node name (the last Conv)
        assert first.artifact_op_type == "Conv", first
        assert first.artifact_node == workers.call("corpus", last_conv, path=str(artifact))
    elif name in AFTER:
        assert BROKEN[name] in first.last_agreeing, first
    else:
        assert BROKEN[name] in first.op_type, first
        assert first.last_agreeing, first  # the conv before it agrees


@task
def last_conv(path: str) -> str:
    """The name of an ONNX model's last Conv node (the one ``perturb_conv`` changes)."""
    import onnx

    return [n.name for n in onnx.load(path).graph.node if n.op_type == "Conv"][-1]


def test_pt2_against_its_onnx_with_one_conv_changed(
        saved_models: Callable[[str, str], Path], converted: Callable[[str, str, str], Path],
        workers: Pool, tmp_path: Path) -> None:
    source = saved_models("cnn", "pt2")
    bad = tmp_path / "cnn-bad.onnx"
    shutil.copy(converted("cnn", "pt2", "onnx"), bad)
    changed = workers.call("corpus", perturb_conv, path=str(bad), factor=1.01)
    found = api.debug(bad, source, inputs=CNN, workers=workers)
    assert found.exit_code == 1
    report = found.to_dict()
    first = report["first_divergence"]
    assert first["artifact_node"] == changed and first["artifact_op_type"] == "Conv"
    assert report["matched"] >= 8 and report["exit_code"] == 1
    assert first["last_agreeing"] and first["cosine"] < 1.0 and first["max_abs_err"] > 0
    nodes = {n["artifact_node"]: n for n in report["nodes"] if n["artifact_node"]}
    assert nodes[changed]["passed"] is False
    assert_schema("debug", report)
    assert all(n["matched_by"] == "name" for n in report["nodes"][1:-1] if n["artifact_node"])
    # validate, on the parity failure, names where it starts (the model is small).
    done = run_cli("validate", bad, "--reference", source, *_flags(CNN))
    assert done.returncode == 1, done.stderr
    assert "First divergence: source getitem_3" in done.stdout
    assert f"-> artifact {changed} (Conv" in " ".join(done.stdout.split())


def test_a_large_model_gets_the_command_to_run(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    from portkit.cli.render import where_line
    from portkit.debug import locate
    from portkit.options import feed

    monkeypatch.setattr(locate, "CHEAP_DEBUG_BYTES", 0)
    art, src = tmp_path / "m.tflite", tmp_path / "m v2.pt2"
    art.write_bytes(b"x")
    src.write_bytes(b"x")
    where = locate.locate(art, src, feed(inputs=["x:1x3x8x8"], seed=3), None)  # type: ignore[arg-type]
    assert not where.searched
    assert where_line(where).plain == (
        f"Where it first goes wrong: run portkit debug {art} --reference '{src}' --input "
        "x:1x3x8x8 --seed 3")


@pytest.fixture(scope="module")
def cnn_tflite(converted: Callable[[str, str, str], Path], workers: Pool,
               tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cnn fixture's ONNX export converted to TFLite by onnx2tf (unvalidated)."""
    made = api.convert(converted("cnn", "pt2", "onnx"), "tflite",
                       tmp_path_factory.mktemp("tflite") / "cnn.tflite", route="onnx2tf",
                       validate=False, workers=workers)
    assert made.artifact is not None, made.routes_tried
    return Path(made.artifact.path)


def test_onnx_against_tflite_from_a_copy_with_one_conv_changed(
        converted: Callable[[str, str, str], Path], cnn_tflite: Path, workers: Pool,
        tmp_path: Path) -> None:
    source = converted("cnn", "pt2", "onnx")
    bad = tmp_path / "cnn-bad.onnx"
    shutil.copy(source, bad)
    changed = workers.call("corpus", perturb_conv, path=str(bad), factor=1.01)
    made = api.convert(bad, "tflite", tmp_path / "bad.tflite", route="onnx2tf", validate=False,
                       workers=workers)
    assert made.artifact is not None, made.routes_tried
    overlay = tmp_path / "errors.json"
    found = api.debug(made.artifact.path, source, overlay=overlay, workers=workers)
    first = found.first_divergence
    assert first is not None and found.exit_code == 1
    # That conv, or the ReLU TFLite fused into it (the conv's own tensor is gone).
    assert first.source_node == changed or (
        first.op_type == "Relu" and changed in _producers(found, first.source_tensor)), first
    assert first.artifact_op_type == "CONV_2D"
    assert any(n.layout == "0,3,1,2" for n in found.nodes)  # NHWC matched back to NCHW
    worst = next(n for n in found.nodes if n.source_tensor == first.source_tensor)
    results = json.loads(overlay.read_text())["results"]  # keyed by TFLite op index
    assert results[worst.artifact_node_id]["value"] == pytest.approx(first.scaled_err)
    clean = run_cli("debug", cnn_tflite, "--reference", source, "--json")
    assert clean.returncode == 0, clean.stderr
    report = json.loads(clean.stdout)
    assert report["first_divergence"] is None and report["exit_code"] == 0
    assert report["matched"] >= 5 and {"unmatched_source", "nodes"} <= set(report)
    table = run_cli("debug", cnn_tflite, "--reference", source)
    assert table.returncode == 0 and "NO DIVERGENCE" in table.stdout, table.stderr


def _producers(report: DebugReport, tensor: str) -> set[str]:
    """Source nodes listed before ``tensor`` (its candidates for the fused conv)."""
    names = [n.source_tensor for n in report.nodes]
    return {n.source_node for n in report.nodes[:names.index(tensor)]}


def test_hops_debug_each_converter(saved_models: Callable[[str, str], Path], cnn_tflite: Path,
                                   workers: Pool, tmp_path: Path) -> None:
    artifact = tmp_path / "cnn.tflite"
    shutil.copy(cnn_tflite, artifact)
    found = api.debug(artifact, saved_models("cnn", "pt2"), inputs=CNN, hops=True,
                      route="torch.onnx+onnx2tf", workers=workers)
    assert found.exit_code == 0 and found.first_divergence is None
    assert [Path(h.artifact.path).name for h in found.hops] == [
        "hop1-torch.onnx.onnx", "hop2-onnx2tf.tflite"]
    assert Path(found.hops[1].source.path) == Path(found.hops[0].artifact.path)
    assert all(h.first_divergence is None and h.matched >= 5 for h in found.hops)
    assert_schema("debug_hops", found.to_dict())
    assert sorted(p.name for p in (tmp_path / "cnn.tflite.hops").iterdir()) == [
        "hop1-torch.onnx.onnx", "hop2-onnx2tf.tflite"]


def test_a_runtime_without_traces_or_a_bad_flag_is_exit_2(tmp_path: Path) -> None:
    missing = run_cli("debug", tmp_path / "none.onnx", "--reference", tmp_path / "none.pt2")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1, missing.stderr
    no_ref = run_cli("debug", tmp_path / "none.onnx")
    assert no_ref.returncode == 2 and "--reference" in no_ref.stderr


def _flags(flags: list[str]) -> list[str]:
    return [x for f in flags for x in ("--input", f)]
