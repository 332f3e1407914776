"""Issue 27, item 6: a bundle replays only the artifact it holds: a manifest naming one
elsewhere (an absolute path, ``..``, a link out of the folder) is refused, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from portkit import api
from portkit.errors import ExitCode, UsageError
from portkit.fixtures import FIXTURES


def test_a_manifest_naming_an_artifact_outside_the_bundle_is_refused(
        saved_models, converted, workers, tmp_path: Path) -> None:
    src, artifact = saved_models("cnn", "pt2"), converted("cnn", "pt2", "onnx")
    bundle = tmp_path / "bundle"
    api.validate(artifact, src, inputs=FIXTURES["cnn"].input_flags, save_bundle=bundle,
                 workers=workers)
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert api.replay(bundle).passed  # its own artifact, by its name in the folder
    (tmp_path / "elsewhere").mkdir()
    (bundle / "out").symlink_to(tmp_path / "elsewhere")
    for name in (str(artifact), f"../{Path(artifact).name}", "out/x.onnx"):
        (bundle / "manifest.json").write_text(json.dumps({**manifest, "artifact": name}))
        with pytest.raises(UsageError, match="outside the bundle") as refused:
            api.replay(bundle)
        assert refused.value.exit_code == ExitCode.INVALID_INPUT
