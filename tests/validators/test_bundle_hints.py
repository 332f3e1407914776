"""A bundle keeps what guessed its outputs' kinds (token ids in, the hidden width), so a replay
judges them as the validation did; a manifest whose hints are not that is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from portkit import api
from portkit.errors import UsageError
from portkit.fixtures import FIXTURES


def test_a_replay_guesses_an_embedding_as_the_validation_did(saved_models, converted,
                                                             tmp_path: Path) -> None:
    src = saved_models("text_encoder", "pt2")
    artifact = converted("text_encoder", "torchscript", "onnx")
    bundle = tmp_path / "bundle"
    report = api.validate(artifact, src, inputs=FIXTURES["text_encoder"].input_flags,
                          save_bundle=bundle)
    kinds = {(o.kind, o.kind_why) for c in report.checks if not c.skipped for o in c.outputs}
    assert kinds == {("embedding", "a vector of the model's hidden width (16) from token ids")}
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["hints"] == {"tokens": True, "hidden": 16}
    replayed = api.replay(bundle)
    assert {(o.kind, o.kind_why) for c in replayed.checks if not c.skipped
            for o in c.outputs} == kinds
    manifest["hints"] = {"tokens": True, "width": 16}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UsageError, match="not a readable portkit bundle"):
        api.replay(bundle)
