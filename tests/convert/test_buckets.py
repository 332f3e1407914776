"""Sequence buckets (``--seq-buckets``): where no route keeps a sequence dimension dynamic in
TFLite, one signature per length in one ``.tflite``, each validated against the source at its
length; the TFLite runtime takes the signature of the input's length (another length is an
error naming them); ``bench`` times each signature. The encoder is
``torch_models.masked_encoder`` (a padding mask computed inside: no route keeps its sequence
dynamic)."""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from portkit.convert.dynamic import bucket_sizes, fallback, fixed_dims, require_kept, static_only
from portkit.errors import DimensionsFixedError, UsageError
from portkit.fixtures import Fixture, torch_models
from portkit.formats import Format
from portkit.formats.tflite import Signature, TensorInfo, bucket_axes
from portkit.options import Feed
from portkit.options.conversion import convert_options, parse_buckets
from portkit.options.feeding import bucketed
from portkit.results import Attempt
from portkit.shapes import Buckets, Shapes, resolve_inputs, validation_sizes
from portkit.specs import Dim, TensorSpec
from tests.conftest import run_cli

IDS = TensorSpec("ids", (1, 16), "int64", (Dim("batch", 1, 8), Dim("seq", 2, 128)))
LOST = Attempt(route="litert-torch", converted=False, passed=False, lost_dynamic=True,
               error=f"litert-torch: {static_only('litert-torch', [IDS], 'axis 0 only')}")


def test_bucket_sizes_are_the_ones_given_else_the_top_of_the_range_and_its_halvings() -> None:
    assert bucket_sizes(Dim("seq", 2, 128), 16) == (16, 32, 64, 128)
    assert bucket_sizes(Dim("seq", 1, 512), 16) == (64, 128, 256, 512)  # at most 4
    assert bucket_sizes(Dim("seq", 20, 100), 32) == (25, 50, 100)  # never below the bottom
    assert bucket_sizes(Dim("seq", 2, None), 16) == (2, 4, 8, 16)  # no top: the example's
    assert bucket_sizes(Dim("seq", 2, 128), 16, (128, 16, 64, 16)) == (16, 64, 128)
    with pytest.raises(UsageError, match=r"--seq-buckets 16,256: 256 outside seq 2\.\.128"):
        bucket_sizes(Dim("seq", 2, 128), 16, (16, 256))


def test_the_flag_takes_lengths_or_auto_and_only_for_tflite() -> None:
    assert parse_buckets("16, 64,128") == (16, 64, 128)
    assert parse_buckets([64, 16]) == (16, 64)
    assert parse_buckets("auto") == ()
    assert parse_buckets(None) is None
    for bad in ("16,x", "0,16", ""):
        with pytest.raises(UsageError, match="comma-separated"):
            parse_buckets(bad)
    assert convert_options(Format.TFLITE, seq_buckets="16,64").seq_buckets == (16, 64)
    assert convert_options(Format.TFLITE).seq_buckets is None
    with pytest.raises(UsageError, match="--seq-buckets is for --to tflite"):
        convert_options(Format.ONNX, seq_buckets="16")


def test_the_fallback_buckets_the_sequence_and_fixes_the_rest_only_when_asked() -> None:
    assert fallback(Shapes(), [], [IDS], [LOST]) == Shapes(fixed=("batch", "seq"))
    assert fallback(Shapes(), [], [IDS], [LOST], buckets=(16, 64, 128)) == Shapes(
        fixed=("batch", "seq"), buckets=(("seq", (16, 64, 128)),))
    assert fallback(Shapes(), [], [IDS], [LOST], buckets=()).buckets == \
        (("seq", (16, 32, 64, 128)),)
    # Several dimensions past the first axis: which one is the sequence is the user's call.
    two = TensorSpec("x", (1, 8, 8), "float32", (None, Dim("h", 2, 16), Dim("w", 2, 16)))
    with pytest.raises(UsageError, match=r"h 2\.\.16, w 2\.\.16; fix all but one"):
        fallback(Shapes(), [], [two], [LOST], buckets=(4, 8))
    # One asked to stay dynamic can't be bucketed too.
    with pytest.raises(UsageError, match="seq must stay dynamic"):
        fallback(Shapes((Dim("seq", 2, 64),)), [], [IDS], [LOST], buckets=(16,))


def test_bucketed_inputs_are_validated_at_every_bucket_and_reported() -> None:
    shapes = Shapes(fixed=("batch", "seq"), buckets=(("seq", (16, 64, 128)),))
    (spec,) = resolve_inputs("m.pt2", [IDS], [], shapes=shapes)
    assert spec.shape == (1, 16) and spec.dims == (None, Buckets("seq", 16, 128, (16, 64, 128)))
    assert validation_sizes([spec]) == [{"seq": 64}, {"seq": 128}]
    # The example between buckets: the smallest that holds it.
    (at_20,) = resolve_inputs("m.pt2", [IDS], [TensorSpec("ids", (1, 20), "int64")],
                              shapes=shapes)
    assert at_20.shape == (1, 64)
    fixed = fixed_dims([IDS], shapes.fixed, [LOST], shapes.buckets)
    assert fixed.sizes == (("batch", 1),) and fixed.buckets == (("seq", (16, 64, 128)),)
    assert fixed.describe() == "batch at 1, seq in buckets 16, 64, 128"
    # A signature per bucket keeps no axis free: not a lost dimension; a lost batch still is.
    require_kept("litert-torch", [spec], [("ids", (1, 16))])
    batch = TensorSpec("ids", (1, 16), "int64", (Dim("batch", 1, 8), spec.dims[1]))
    with pytest.raises(DimensionsFixedError, match="ids written as 1x16"):
        require_kept("litert-torch", [batch], [("ids", (1, 16))])


ENCODER = Fixture("masked_encoder", functools.partial(torch_models.masked_encoder, layers=1),
                  (TensorSpec("ids", (1, 16), "int64", (None, Dim("seq", 16, 128))),),
                  "a transformer encoder with a padding mask, its sequence dynamic")


def _far_positions_moved() -> Any:
    """``ENCODER``'s model with the position embeddings past 64 moved: the same as the source
    at lengths up to 64, another model at 128."""
    import torch

    model = ENCODER.build()
    with torch.no_grad():
        model.position.weight[64:] += 1.0
    return model


MOVED = dataclasses.replace(ENCODER, build=_far_positions_moved)


def _signature(name: str, length: int) -> Signature:
    return Signature(name, (TensorInfo("args_0", (1, length), "int32"),),
                     (TensorInfo("output_0", (1, 32), "float32"),))


def test_a_file_of_one_signature_per_length_gives_its_bucketed_axis_and_the_feed_its_buckets(
        ) -> None:
    found = (_signature("seq_64", 64), _signature("seq_16", 16), _signature("seq_128", 128))
    assert bucket_axes(found) == (("args_0", 1, (16, 64, 128)),)
    assert bucket_axes(found[:1]) == ()  # one signature
    other = Signature("decode", (TensorInfo("token", (1, 1), "int32"),), found[0].outputs)
    assert bucket_axes(found[:2] + (other,)) == ()  # a prefill and a decode: not buckets
    (spec,) = resolve_inputs("m.pt2", [IDS], [])
    fed = bucketed(Feed(), [spec], "seq", (16, 64, 128), "enc.tflite")
    assert fed.shapes.buckets == (("seq", (16, 64, 128)),)
    assert bucketed(Feed(inputs=(TensorSpec("ids", (1, 64), "int64"),)), [spec], "seq",
                    (16, 64, 128), "enc.tflite").shapes.buckets == fed.shapes.buckets
    with pytest.raises(UsageError, match=r"--input ids:1x33: enc\.tflite holds one signature "
                                         r"per length of seq \(16, 64, 128\) and none takes 33"):
        bucketed(Feed(inputs=(TensorSpec("ids", (1, 33), "int64"),)), [spec], "seq",
                 (16, 64, 128), "enc.tflite")


def test_a_dynamic_sequence_becomes_a_signature_per_bucket_run_by_length_and_benched(
        tmp_path: Path) -> None:
    """The one-layer encoder through the CLI with buckets 16, 64, 128 (litert-torch only: its
    refusal of the dynamic sequence is instant), one test so that the conversion runs once per
    test run whichever worker takes it: each bucket matches the source, the runtime takes the
    signature of the input's length and names them at another, bench times each."""
    import torch

    from portkit.options import LoadOptions
    from portkit.runtimes import registry

    source = ENCODER.save(tmp_path, "pt2")
    out = tmp_path / "encoder.tflite"
    done = run_cli("convert", source, "--to", "tflite", "-o", out, "--route", "litert-torch",
                   "--seq-buckets", "16,64,128", "--report", tmp_path / "r.json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Buckets: ids.1 at 16, 64, 128 (one TFLite signature per length" in done.stdout
    assert "litert-torch (ids.1 bucketed)" in done.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["passed"] and report["fixed"]["buckets"] == [["ids.1", [16, 64, 128]]]
    assert report["fixed"]["sizes"] == []
    assert "lowers only a dynamic first dimension" in report["fixed"]["refusals"][0]
    rows = {(c["device"], c["size"]): c["passed"] for c in report["checks"]}
    assert {size for _d, size in rows} == {"ids 1x16", "ids 1x64", "ids 1x128"}
    assert all(rows.values()), rows
    assert [s["name"] for s in report["mobile"]["signatures"]] == ["seq_16", "seq_64", "seq_128"]
    first, second = report["routes_tried"]
    assert not first["converted"] and first["lost_dynamic"]
    assert second["passed"] and second["fixed"] == ["ids.1"]
    assert "signature per size of ids.1 in buckets 16, 64, 128" in second["hops"][0]["detail"]

    session = registry.get("tflite").load(out, Format.TFLITE, "cpu", LoadOptions())
    assert [s.shape for s in session.inputs] == [(1, None)]
    module = ENCODER.module()
    for length in (16, 64, 128):
        ids = np.random.default_rng(length).integers(0, 100, (1, length))
        ids[0, length // 2:] = 0  # padding, masked inside
        got = session.run({session.inputs[0].name: ids})
        with torch.no_grad():
            want = module(torch.from_numpy(ids)).numpy()
        np.testing.assert_allclose(next(iter(got.values())), want, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"1x33: .* seq_16 \(1x16\); seq_64 \(1x64\); "
                                         r"seq_128 \(1x128\); pad the input"):
        session.run({session.inputs[0].name: np.ones((1, 33), np.int64)})

    # validate and inspect read the signatures: validated at each bucket, whatever sizes the
    # source's range gives (16..128 gives 16, 33, 128; 33 is no bucket).
    checked = run_cli("validate", out, "--reference", source, "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rows = [c for c in json.loads(checked.stdout)["checks"] if c["device"] == "cpu"]
    assert [(c["size"], c["passed"]) for c in rows] == [
        ("ids 1x16", True), ("ids 1x64", True), ("ids 1x128", True)]
    forced = run_cli("validate", out, "--reference", source, "--input", "ids:1x33")
    assert forced.returncode == 2 and "none takes 33; give one of those lengths" in forced.stderr
    (tmp_path / "moved").mkdir()
    moved = run_cli("validate", out, "--reference", MOVED.save(tmp_path / "moved", "pt2"),
                    "--json")
    assert moved.returncode == 1, moved.stdout + moved.stderr
    failed = json.loads(moved.stdout)
    rows = [c for c in failed["checks"] if c["device"] == "cpu"]
    assert [(c["size"], c["passed"]) for c in rows] == [
        ("ids 1x16", True), ("ids 1x64", True), ("ids 1x128", False)]
    # no walk at the example's length, which passed: only the command that looks
    assert failed["where"]["searched"] is False and "portkit debug" in failed["where"]["command"]
    (tmp_path / "portkit.toml").write_text(
        f'[[model]]\nname = "enc"\nsource = "{source}"\nartifact = "{out}"\n'
        'targets = ["tflite"]\n')
    gate = run_cli("check", tmp_path / "portkit.toml", "--json", tmp_path / "check.json")
    assert gate.returncode == 0, gate.stdout + gate.stderr
    (case,) = json.loads((tmp_path / "check.json").read_text())["results"]
    assert [c["size"] for c in case["checks"] if c["device"] == "cpu"] == [
        "ids 1x16", "ids 1x64", "ids 1x128"]
    inspected = run_cli("inspect", out)
    assert "Signatures (3; the table shows the first's tensors): seq_16 (args_0 1x16), seq_64 " \
           "(args_0 1x64), seq_128 (args_0 1x128)" in " ".join(inspected.stdout.split())

    bench = run_cli("bench", out, "--warmup", "1", "--min-runs", "3", "--min-seconds", "0.05",
                    "--json")
    assert bench.returncode == 0, bench.stdout + bench.stderr
    timed = json.loads(bench.stdout)["rows"]
    assert [r["inputs"] for r in timed] == ["seq_16 (args_0 1x16)", "seq_64 (args_0 1x64)",
                                            "seq_128 (args_0 1x128)"]
    assert all(r["latency"]["p50_ms"] > 0 for r in timed)
    profiled = run_cli("bench", out, "--profile", "--shape", "args_0:1x64")
    assert profiled.returncode == 2, profiled.stdout + profiled.stderr
    assert "--profile times a bucketed model's first signature only" in profiled.stderr


@pytest.mark.slow
def test_every_route_then_auto_buckets_and_without_the_flag_the_sequence_is_fixed(
        tmp_path: Path) -> None:
    """The two-layer encoder as a user converts it: every route refuses the dynamic sequence
    (onnx2tf fails on the mask's subgraph); with ``--seq-buckets auto`` the range 16..128 gives
    16, 32, 64, 128, each matching; without the flag the sequence is fixed at 16, as before."""
    encoder = Fixture("masked_encoder", torch_models.masked_encoder, ENCODER.inputs, "")
    source = encoder.save(tmp_path, "pt2")
    done = run_cli("convert", source, "--to", "tflite", "-o", tmp_path / "b.tflite",
                   "--seq-buckets", "auto", "--json")
    report = json.loads(done.stdout)
    assert done.returncode == 0, report["routes_tried"]
    assert report["fixed"]["buckets"] == [["ids.1", [16, 32, 64, 128]]]
    assert {c["size"] for c in report["checks"]} == {f"ids 1x{n}" for n in (16, 32, 64, 128)}
    assert any(r["route"] == "torch.onnx+onnx2tf" and not r["converted"]
               for r in report["routes_tried"])
    plain = run_cli("convert", source, "--to", "tflite", "-o", tmp_path / "f.tflite", "--json")
    fixed = json.loads(plain.stdout)["fixed"]
    assert plain.returncode == 0 and fixed["sizes"] == [["ids.1", 16]] and fixed["buckets"] == []
