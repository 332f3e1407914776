"""Format sniffing on real files built at test time, and on broken ones."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from portkit.errors import InvalidModelError
from portkit.formats import Format, sniff

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")


class _Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("formats")
    m, x = _Tiny().eval(), torch.randn(1, 4)
    out = {"ts": d / "m.pt", "pt2": d / "m.pt2", "sd": d / "sd.pt", "pickle": d / "pickle.pt",
           "legacy_sd": d / "legacy.pt", "onnx": d / "m.onnx", "h5": d / "m.h5", "tflite": d / "m.tflite"}
    torch.jit.save(torch.jit.trace(m, (x,)), str(out["ts"]))
    torch.export.save(torch.export.export(m, (x,)), str(out["pt2"]))
    torch.save(m.state_dict(), out["sd"])
    torch.save(m, out["pickle"])
    torch.save(m.state_dict(), out["legacy_sd"], _use_new_zipfile_serialization=False)
    torch.onnx.export(m, (x,), str(out["onnx"]), dynamo=False)
    out["h5"].write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    # A minimal flatbuffer header: root offset, "TFL3", padding.
    out["tflite"].write_bytes((16).to_bytes(4, "little") + b"TFL3" + b"\0" * 64)
    (d / "sm").mkdir()
    (d / "sm" / "saved_model.pb").write_bytes(b"\x08\x01")
    out["savedmodel"] = d / "sm"
    return out


@pytest.mark.parametrize("key,fmt", [
    ("ts", Format.TORCHSCRIPT), ("pt2", Format.EXPORTED_PROGRAM), ("sd", Format.STATE_DICT),
    ("pickle", Format.TORCH_PICKLE), ("legacy_sd", Format.STATE_DICT), ("onnx", Format.ONNX),
    ("h5", Format.H5), ("tflite", Format.TFLITE), ("savedmodel", Format.SAVEDMODEL),
])
def test_sniff_real_files(files: dict[str, Path], key: str, fmt: Format) -> None:
    assert sniff(files[key]) is fmt


def test_sniff_ignores_the_extension(files: dict[str, Path], tmp_path: Path) -> None:
    renamed = tmp_path / "model.tflite"
    renamed.write_bytes(files["onnx"].read_bytes())
    assert sniff(renamed) is Format.ONNX


@pytest.mark.parametrize("content,message", [
    (b"", "is empty"),
    (os.urandom(4096), "not a model format"),
    (b"TFL3TFL3", "truncated"),
])
def test_sniff_bad_bytes(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.bin"
    path.write_bytes(content)
    with pytest.raises(InvalidModelError, match=message) as info:
        sniff(path)
    assert str(path) in str(info.value)


def test_sniff_truncated_zip(files: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "cut.pt"
    data = files["ts"].read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidModelError, match="truncated or corrupt"):
        sniff(path)


def test_sniff_keras_archive(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "m.bin"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", "{}")
        zf.writestr("metadata.json", "{}")
        zf.writestr("model.weights.h5", b"")
    assert sniff(path) is Format.KERAS


def test_sniff_missing_and_plain_directory(tmp_path: Path) -> None:
    with pytest.raises(InvalidModelError, match="no such file"):
        sniff(tmp_path / "nope.pt")
    with pytest.raises(InvalidModelError, match="not a SavedModel"):
        sniff(tmp_path)


def test_onnx_with_a_model_version_is_onnx(tmp_path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph)
    model.model_version = 3
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    assert sniff(path) is Format.ONNX


def test_a_zip_with_a_corrupt_member_is_a_bad_file(tmp_path) -> None:
    import zipfile

    path = tmp_path / "m.pt"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", b"x" * 5000)
    data = bytearray(path.read_bytes())
    start = data.index(b"archive/data.pkl") + len("archive/data.pkl")
    data[start:start + 8] = b"\xff" * 8  # garble the deflate stream
    path.write_bytes(bytes(data))
    with pytest.raises(InvalidModelError, match="truncated or corrupt"):
        sniff(path)


@pytest.mark.parametrize("key", ["ts", "pt2", "sd", "onnx"])
def test_flipped_bits_give_a_format_or_a_clear_error(files: dict[str, Path], tmp_path: Path,
                                                     key: str) -> None:
    # Seeded corruptions of real files: sniffing names a format or raises a PortkitError,
    # never anything else (a zip member name that is not UTF-8 once escaped as exit 70).
    import random

    from portkit.errors import PortkitError

    rng, good = random.Random(key), files[key].read_bytes()
    for trial in range(300):
        data = bytearray(good)
        for _ in range(rng.randint(1, 20)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        path = tmp_path / f"{trial}{files[key].suffix}"
        path.write_bytes(bytes(data))
        try:
            assert isinstance(sniff(path), Format)
        except PortkitError:
            pass
