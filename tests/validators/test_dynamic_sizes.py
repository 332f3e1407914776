"""A dynamic source is judged at several sizes: each size its own check, kept by a bundle."""

from __future__ import annotations

from pathlib import Path

from portkit import api
from portkit.fixtures import FIXTURES


def test_a_dynamic_batch_is_validated_at_each_size_and_a_bundle_replays_them(
        tmp_path: Path) -> None:
    src = FIXTURES["keras_cnn"].save(tmp_path)  # Keras: a None batch
    onnx = tmp_path / "m.onnx"
    converted = api.convert(src, "onnx", onnx, dims=["batch=1..4"])
    assert converted.passed, converted.routes_tried
    [image] = converted.inputs
    assert [(d.name, d.lo, d.hi) for d in image.dynamic] == [("batch", 1, 4)]
    sizes = [c.size for c in converted.checks]
    # the example, an odd size, the range's top (4x the example's elements: cheap)
    assert sizes == ["image 1x32x32x3", "image 3x32x32x3", "image 4x32x32x3"]
    report = api.validate(onnx, src, dims=["batch=1..4"], save_bundle=tmp_path / "bundle")
    assert report.passed and [c.size for c in report.checks if not c.skipped] == sizes
    replayed = api.replay(tmp_path / "bundle")
    assert replayed.passed and [c.size for c in replayed.checks if not c.skipped] == sizes
    fixed = api.validate(onnx, src, static=True)
    assert [c.size for c in fixed.checks if not c.skipped] == [""]  # --static: the example size only
