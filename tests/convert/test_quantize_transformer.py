"""int8 on a transformer (``portkit/fixtures/encoders.py``: a 6-layer sentence encoder with an
outlier feed-forward channel in block 3): int8 linear layers with float attention by default,
full int8 only with ``--int8-io``; ``--keep-float auto`` searching by block before single ops,
judged on the held-back samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from portkit.fixtures import encoders
from tests.convert.test_tensorflow_edges import convert_json

ARGS = ("--to", "tflite", "--quantize", "int8", "--min-cosine", "0.99")


@pytest.fixture(scope="module")
def outlier(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The outlier encoder as a ``.pt2`` (ids ``1x32``) and ``calibration.npz`` (132 seeded
    samples: 100 to calibrate on, 32 held back)."""
    import torch

    folder = tmp_path_factory.mktemp("outlier-encoder")
    ids = torch.from_numpy(encoders.token_ids(1, 32, seed=5))
    src = folder / "outlier_encoder.pt2"
    torch.export.save(torch.export.export(encoders.outlier_encoder(), (ids,)), src)
    return src, encoders.write_ids(folder / "calibration.npz", 132, 32, seed=1)


def test_the_outlier_encoder_computes_the_encoders_function() -> None:
    import torch

    ids = torch.from_numpy(encoders.token_ids(4, 32, seed=7))
    with torch.no_grad():
        plain, outlier = encoders.encoder()(ids), encoders.outlier_encoder()(ids)
        block = encoders.outlier_encoder().layers[encoders.OUTLIER_LAYER]
        up = torch.relu(block.up(torch.randn(64, 64)))
    assert torch.allclose(plain, outlier, atol=1e-4)
    assert up.max() > 100 * up.median()  # the channel is an outlier


def test_keep_float_auto_restores_the_int8_transformer_with_two_linear_layers_float(
        outlier: tuple[Path, Path], tmp_path: Path) -> None:
    src, calibration = outlier
    code, report, err = convert_json(src, *ARGS, "--calibration", calibration,
                                     "--keep-float", "auto", "-o", tmp_path / "auto.tflite")
    assert code == 0, err + json.dumps(report.get("routes_tried"), indent=1)
    q = report["quantization"]
    # transformer-shaped: only the linear layers are int8, attention and norms stay float
    assert "the default for a transformer-shaped model (12 BATCH_MATMUL" in q["recipe"]
    # the first trial, int8 everywhere the recipe quantizes, failed on calibration samples
    assert q["keep_float_auto"] and q["trials"] > 1
    block = f"Block_{encoders.OUTLIER_LAYER}/"
    kept = {o["name"]: o["tensor"] for o in q["ops"] if o["name"] in q["keep_float"]}
    assert len(kept) == 2 and all(block in tensor for tensor in kept.values()), kept
    assert len(kept) <= 0.1 * len(q["ops"])
    assert q["trials"] <= 20  # by block first: 36 linear layers, a pair in one block
    assert q["search_seconds"] > 0 and q["search_peak_mb"] > 0
    [row] = report["checks"][0]["outputs"]  # on the 32 held-back samples
    assert row["samples"] == 32 and row["cosine"] >= 0.99 and report["passed"]


@pytest.mark.slow
@pytest.mark.parametrize("extra", [(), ("--int8-io",)])
def test_int8_fails_on_the_outlier_compute_only_and_full(outlier: tuple[Path, Path],
                                                         tmp_path: Path,
                                                         extra: tuple[str, ...]) -> None:
    src, calibration = outlier
    code, report, _ = convert_json(src, *ARGS, "--calibration", calibration, *extra,
                                   "-o", tmp_path / "plain.tflite")
    assert code == 1 and not report["passed"]
    [row] = report["checks"][0]["outputs"]
    assert row["cosine"] < 0.99 and "cosine" in row["failed"]
    recipe = report["quantization"]["recipe"]
    assert ("int8 inputs and outputs" in recipe) == bool(extra)
    assert ("conv and linear ops only" in recipe) != bool(extra)


def test_only_attention_with_more_linear_layers_than_convs_is_transformer_shaped() -> None:
    """The old default, pinned: a model that is no transformer quantizes every op."""
    from portkit.convert.tflite_quantize import transformer_shaped

    assert transformer_shaped(["CONV_2D"] * 3 + ["FULLY_CONNECTED", "MEAN"]) == ""
    assert transformer_shaped(["FULLY_CONNECTED"] * 4) == ""  # an MLP: no attention
    assert transformer_shaped(["BATCH_MATMUL"] + ["CONV_2D"] * 4 + ["FULLY_CONNECTED"]) == ""
    assert transformer_shaped(["BATCH_MATMUL"] * 2 + ["FULLY_CONNECTED"] * 4) == (
        "2 BATCH_MATMUL, 4 FULLY_CONNECTED, 0 conv")
