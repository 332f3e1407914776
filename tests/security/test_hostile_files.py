"""Hostile and broken model files: each is refused (or stopped) with its documented exit code and
one line, the CLI survives, nothing is written outside the test's folder, and no payload runs.

The generators in ``hostile.py`` build every file at test time.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import portkit
from portkit.errors import InvalidModelError, ResourceError
from portkit.formats import TARGETS
from tests.conftest import run_cli
from tests.security import hostile

Saved = Callable[[str, str], Path]

# (generator, convert arguments, exit code, words the one error line must hold)
CASES = [
    ("pickle_zip", ["--to", "onnx"], 4, "pickled Python object"),
    ("pickle_legacy", ["--to", "onnx"], 4, "pickled Python object"),
    ("torchscript_truncated", ["--to", "onnx"], 2, "truncated or corrupt"),
    ("torchscript_bitflipped", ["--to", "onnx", "--input", "x:1x4"], 2, "bitflipped.pt"),
    ("zip_bomb", ["--to", "onnx"], 4, "zip bomb"),
    ("onnx_parent_dir", ["--to", "tflite"], 4, "outside the model's folder"),
    ("onnx_absolute", ["--to", "tflite"], 4, "outside the model's folder"),
    ("onnx_symlink_out", ["--to", "tflite"], 4, "a link to"),
    ("onnx_hardlink", ["--to", "tflite"], 4, "a hard link"),
    ("onnx_offset_beyond", ["--to", "tflite"], 2, "beyond its 16 bytes"),
    ("onnx_endless_loop", ["--to", "tflite", "--timeout", "6"], 6, "ran past its 6 s limit"),
    ("tflite_8_bytes", ["--to", "onnx"], 2, "truncated"),
    ("tflite_truncated", ["--to", "onnx"], 2, "truncated"),
    ("keras_callable", ["--to", "onnx"], 2, "custom object os.system in layer 'dense'"),
    ("keras_lambda", ["--to", "onnx"], 2, "Lambda layer 'touch'"),
    ("savedmodel_writefile", ["--to", "onnx"], 4, "WriteFile"),
]


@pytest.mark.parametrize("name,args,code,words", CASES, ids=[c[0] for c in CASES])
def test_hostile_file_is_refused_safely(tmp_path: Path, name: str, args: list[str], code: int,
                                        words: str) -> None:
    files, cwd, temp = tmp_path / "files", tmp_path / "cwd", tmp_path / "tmp"
    for folder in (files, cwd, temp):
        folder.mkdir()
    sentinel = tmp_path / "SENTINEL"
    source = getattr(hostile, name)(files, sentinel)
    written_before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    out = tmp_path / f"out{TARGETS[args[args.index('--to') + 1]].suffix}"  # -o fits --to

    done = run_cli("convert", source, *args, "-o", out, cwd=cwd, env={"TMPDIR": str(temp)})

    assert done.returncode == code, done.stderr  # a documented code, not a signal: CLI alive
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("portkit:")]
    assert len(lines) == 1 and words in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not sentinel.exists(), "the payload ran"
    assert not out.exists() and list(cwd.iterdir()) == []
    # Nothing new anywhere in the test's folder; the workers' scratch folders (in TMPDIR) are gone.
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == written_before


def test_inputs_npz_with_object_arrays_is_never_unpickled(saved_models: Saved,
                                                          tmp_path: Path) -> None:
    sentinel = tmp_path / "SENTINEL"
    bad = hostile.npz_object_array(tmp_path, sentinel)
    done = run_cli("convert", saved_models("cnn", "pt2"), "--to", "onnx", "--inputs", bad,
                   "-o", tmp_path / "out.onnx")
    assert done.returncode == 2
    [line] = [ln for ln in done.stderr.splitlines() if ln.startswith("portkit:")]
    assert "cannot read it" in line and not sentinel.exists()
    assert not (tmp_path / "out.onnx").exists()


def test_a_conversion_failing_half_way_leaves_the_existing_output(
        saved_models: Saved, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Fault injection: the final rename fails (a full disk), after every route has run.
    out = tmp_path / "model.onnx"
    out.write_bytes(b"previous artifact")

    def disk_full(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("portkit.io.os.replace", disk_full)
    with pytest.raises(ResourceError, match="no space left on the device.*unchanged"):
        portkit.convert(saved_models("cnn", "pt2"), "onnx", out)
    assert out.read_bytes() == b"previous artifact"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # no staging folder left


@pytest.mark.parametrize("how", ["dotdot", "symlink"])
def test_output_through_dotdot_or_a_symlink_is_refused(saved_models: Saved, tmp_path: Path,
                                                       how: str) -> None:
    outside = tmp_path / "outside.onnx"
    outside.write_bytes(b"not yours")
    (tmp_path / "out").mkdir()
    if how == "dotdot":
        target = tmp_path / "out" / ".." / "outside.onnx"
    else:
        target = tmp_path / "out" / "model.onnx"
        target.symlink_to(outside)
    done = run_cli("convert", saved_models("cnn", "pt2"), "--to", "onnx", "-o", target)
    assert done.returncode == 2
    [line] = [ln for ln in done.stderr.splitlines() if ln.startswith("portkit:")]
    assert ("'..'" if how == "dotdot" else "symlink") in line
    assert outside.read_bytes() == b"not yours"


def test_inspect_and_the_interpreter_agree_on_fuzzed_flatbuffers(tmp_path: Path) -> None:
    # inspect once read a fuzzed flatbuffer's tables alone: some it called "runs on the builtin
    # interpreter: yes" that the interpreter (and convert) refused, others ended in exit 70.
    from portkit import api
    from portkit.errors import ExitCode, PortkitError
    from portkit.options import Budget

    model = hostile.tflite_model(tmp_path)
    said_yes = 0
    for seed in range(12):
        fuzzed = hostile.fuzzed(model, tmp_path, seed)
        try:
            info = portkit.inspect(fuzzed)
        except PortkitError as e:
            assert e.exit_code == ExitCode.INVALID_INPUT, (seed, e)
            continue
        assert info.info.mobile is not None
        if info.info.mobile.builtin_only:  # then it must really load and run
            said_yes += 1
            api.bench([fuzzed], budget=Budget(0, 1, 0))
    assert said_yes < 12  # the fuzzing did break files


def test_an_op_naming_a_tensor_the_subgraph_lacks_is_refused_by_inspect(tmp_path: Path) -> None:
    # seen fuzzed: inspect said "runs on the builtin interpreter", the interpreter refused it
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(
        hostile.tflite_model(tmp_path).read_bytes(), 0))
    op = model.subgraphs[0].operators[0]
    op.inputs = [63489, *op.inputs[1:]]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(bytes(builder.Output()))
    with pytest.raises(InvalidModelError, match=r"broken.tflite: subgraph 0: op 0's inputs name "
                                                r"tensor 63489, but the subgraph has \d+ tensors"):
        portkit.inspect(broken)
