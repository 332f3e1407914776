"""Issue 27, item 12 (and the "Smaller" config mistakes): a ``portkit.toml``, a ``--baseline``
report or a bundle's ``manifest.json`` holding a value of the wrong type is refused when read,
exit 2, before any work: one line naming the file, the key, what was expected and what was
found. These used to exit 70 (a bug), or, for the baseline, 70 only after the whole run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from portkit.errors import ExitCode
from tests.conftest import run_cli
from tests.reliability.models import relu

MODEL = '[[model]]\nname = "r"\nsource = "relu.onnx"\ntargets = ["onnx"]\n'


def _fails(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit 2 and one ``portkit: error:`` line naming every fragment; the line."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("portkit: error:")]
    assert result.returncode == ExitCode.INVALID_INPUT, result.stderr[-2000:]
    assert len(errors) == 1, result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


@pytest.mark.parametrize(("config", "key", "found"), [
    ('[model]\nname = "r"\nsource = "relu.onnx"\ntargets = ["onnx"]\n', "model", "a table"),
    ("defaults = 5\n" + MODEL, "defaults", "5"),
    (MODEL.replace('"relu.onnx"', "5"), "model[1].source", "5"),
    (MODEL + "outputs = 5\n", "model[1].outputs", "5"),
    (MODEL.replace('["onnx"]', '"onnx"'), "model[1].targets", "'onnx'"),
    (MODEL + "inputs = 5\n", "model[1].inputs", "5"),
], ids=["model-table", "defaults-5", "source-5", "outputs-5", "targets-string", "inputs-5"])
def test_a_config_value_of_the_wrong_type_is_exit_2_naming_the_key(
        tmp_path: Path, config: str, key: str, found: str) -> None:
    (tmp_path / "portkit.toml").write_text(config)
    relu(tmp_path)
    line = _fails(run_cli("check", tmp_path / "portkit.toml"),
                  "portkit.toml", f"{key}:", "expected", f"found {found}")
    assert "['o', 'n'" not in line  # a string is no list of its characters
    assert not (tmp_path / ".portkit-check").exists()  # refused before any work


@pytest.mark.parametrize(("entry", "key", "found"), [
    ('[[model]]\nname = "r"\nfixture = "nope"\ntargets = ["onnx"]\n', "model[1].fixture",
     "'nope'"),
    ('[[model]]\nname = "r"\nfixture = "cnn"\nkind = "bogus"\ntargets = ["onnx"]\n',
     "model[1].kind", "'bogus'"),
], ids=["unknown-fixture", "bogus-kind"])
def test_a_config_mistake_is_usage_not_a_failed_case(tmp_path: Path, entry: str, key: str,
                                                     found: str) -> None:
    # They used to fail as a case (exit 1) after the config was taken.
    (tmp_path / "portkit.toml").write_text(entry)
    _fails(run_cli("check", tmp_path / "portkit.toml"), "portkit.toml", key, found)
    assert not (tmp_path / ".portkit-check").exists()


def test_a_baseline_of_the_wrong_type_is_exit_2_before_the_run(tmp_path: Path) -> None:
    relu(tmp_path)
    (tmp_path / "portkit.toml").write_text(
        '[[model]]\nname = "r"\nsource = "relu.onnx"\nartifact = "relu.onnx"\n'
        'inputs = ["x:1x4"]\np50_regression = 0.1\n')
    baseline = tmp_path / "run.json"
    baseline.write_text(json.dumps({"results": [
        {"id": "r/onnx/onnxruntime", "passed": True, "latency": {"p50_ms": "slow"}}]}))
    junit = tmp_path / "junit.xml"
    _fails(run_cli("check", tmp_path / "portkit.toml", "--baseline", baseline, "--junit", junit),
           f"--baseline {baseline}", "results[1].latency.p50_ms:", "expected a number",
           "found 'slow'")
    assert not (tmp_path / ".portkit-check").exists()  # no case ran


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle of ``relu.onnx`` validated against itself."""
    folder = tmp_path_factory.mktemp("bundle")
    model = relu(folder)
    result = run_cli("validate", model, "--reference", model, "--runtime", "onnxruntime",
                     "--save-bundle", folder / "b")
    assert result.returncode == 0, result.stderr[-2000:]
    return folder / "b"


@pytest.mark.parametrize(("change", "key", "found"), [
    ({"state": 5}, "state", "5"),
    ({"sizes": [[1]]}, "sizes[1]", "[1]"),
    ({"tolerance": {"atol": "x"}}, "tolerance.atol", "'x'"),
    ({"steps": "many"}, "steps", "'many'"),
], ids=["state-5", "sizes-1", "atol-string", "steps-many"])
def test_a_manifest_value_of_the_wrong_type_is_exit_2_naming_the_key(
        bundle: Path, tmp_path: Path, change: dict[str, object], key: str, found: str) -> None:
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    if "tolerance" in change:
        change = {"tolerance": {**manifest["tolerance"], **change["tolerance"]}}  # type: ignore
    (copy / "manifest.json").write_text(json.dumps({**manifest, **change}))
    _fails(run_cli("validate", "--bundle", copy, "--runtime", "onnxruntime"),
           f"--bundle {copy}", "manifest.json", f"{key}:", "expected", f"found {found}")


def test_an_unknown_config_key_is_refused_naming_the_known_ones(tmp_path: Path) -> None:
    # [default] for [defaults] was silently ignored: its keys never reached a model.
    from portkit.errors import UsageError
    from portkit.gate import load_config

    (tmp_path / "portkit.toml").write_text('[default]\natol = 1e-3\n\n' + MODEL)
    with pytest.raises(UsageError, match=r"portkit.toml: unknown key default \(known: defaults, "
                                         r"model\)"):
        load_config(tmp_path / "portkit.toml")


def test_a_manifest_missing_a_key_it_needs_is_refused_naming_it(bundle: Path,
                                                               tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["tolerance"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    _fails(run_cli("validate", "--bundle", copy, "--runtime", "onnxruntime"),
           f"--bundle {copy}", "manifest.json", "tolerance: missing (expected an object)")
