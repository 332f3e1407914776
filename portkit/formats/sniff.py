"""Telling a model file's format by its bytes (magic numbers and archive layout), not its
extension.

Sniffing never imports a framework and never unpickles anything: it reads magic bytes, a zip's
central directory and, for pickles, the opcode stream.
"""

from __future__ import annotations

import errno
import os
import pickletools
import zipfile
import zlib
from pathlib import Path

from portkit.errors import InvalidModelError, UnsafeModelError
from portkit.formats.format import Format

# Archive limits checked before decompressing anything (weights barely compress).
MAX_ARCHIVE_MEMBERS = 100_000
MAX_ARCHIVE_BYTES = 64 * 2**30
MAX_COMPRESSION_RATIO = 100
_ZIP_MAGIC = b"PK\x03\x04"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
# torch.save's legacy (non-zip) format starts with a pickled magic number.
_TORCH_LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
# Globals a plain state_dict pickle may reference; anything else means pickled code.
_STATE_DICT_GLOBALS = (
    "collections OrderedDict",
    "torch._utils _rebuild_tensor",
    "torch._utils _rebuild_parameter",
    "torch FloatStorage",
    "torch DoubleStorage",
    "torch HalfStorage",
    "torch BFloat16Storage",
    "torch LongStorage",
    "torch IntStorage",
    "torch ShortStorage",
    "torch CharStorage",
    "torch ByteStorage",
    "torch BoolStorage",
    "torch float",
    "torch int",
    "torch bfloat16",
    "torch half",
    "torch long",
    "torch bool",
    "torch device",
    "torch Size",
)
# ModelProto field tags that may follow ir_version (field 1) in a serialized ONNX file.
_ONNX_SECOND_TAGS = {0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72, 0x7A, 0xA2, 0xCA}


def sniff(path: str | Path) -> Format:
    """Tell a model file's format from its contents.

    Args:
        path: A model file, a SavedModel directory or a Hugging Face model directory.

    Returns:
        The detected format.

    Raises:
        InvalidModelError: The path is missing, empty, truncated, or no known format.
    """
    path = Path(path)
    if not path.exists():
        raise InvalidModelError(_missing(path))
    if path.is_dir():
        if (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file():
            return Format.SAVEDMODEL
        if (path / "config.json").is_file():
            return Format.HUGGINGFACE
        raise InvalidModelError(
            f"{path}: a directory, but not a SavedModel (no saved_model.pb inside) nor a "
            "Hugging Face model directory (no config.json inside); pass a model file, a "
            "SavedModel directory or a Hugging Face model directory"
        )
    size = path.stat().st_size
    if size == 0:
        raise InvalidModelError(f"{path}: the file is empty; re-export the model")
    with path.open("rb") as f:
        head = f.read(64)
    if head.startswith(_ZIP_MAGIC):
        return _sniff_zip(path)
    if head.startswith(_HDF5_MAGIC):
        return Format.H5
    if head[4:8] == b"TFL3":
        _check_tflite_size(path, head, size)
        return Format.TFLITE
    if head[4:6] == b"ET" and head[6:8].isdigit():  # ExecuTorch's flatbuffer (ET12)
        return Format.EXECUTORCH
    if head.startswith(b"\x80") and _TORCH_LEGACY_MAGIC in head:
        start = head.index(_TORCH_LEGACY_MAGIC) - 2
        return _sniff_pickle(path, path.read_bytes()[start:], pickles=4)
    if _looks_like_onnx(head):
        return Format.ONNX
    raise InvalidModelError(
        f"{path}: not a model format portkit knows (first bytes {head[:8]!r}); expected "
        "TorchScript/ExportedProgram (.pt/.pt2), ONNX, TFLite, ExecuTorch (.pte), SavedModel, "
        ".keras or .h5"
    )


def _missing(path: Path) -> str:
    """Why ``path`` is not there: a symbolic link loop, a link to nothing, or no such file."""
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return (f"{path}: a symbolic link loop (a link that leads back to itself); point it "
                    "at the model file")
    if path.is_symlink():
        return (f"{path}: a symbolic link to {os.readlink(path)}, which does not exist; point "
                "it at the model file")
    return f"{path}: no such file or directory"


def _sniff_zip(path: Path) -> Format:
    try:
        with zipfile.ZipFile(path) as zf:
            _check_archive(path, zf)
            names = zf.namelist()
            if "config.json" in names and "metadata.json" in names:
                return Format.KERAS
            members = {n.split("/", 1)[1] for n in names if "/" in n}
            if "archive_format" in members or any(m.startswith("models/") for m in members):
                return Format.EXPORTED_PROGRAM
            if "constants.pkl" in members and any(m.startswith("code/") for m in members):
                return Format.TORCHSCRIPT
            pkl = next((n for n in names if n.endswith("/data.pkl")), None)
            if pkl is not None:
                return _sniff_pickle(path, zf.read(pkl))
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, RuntimeError,
            NotImplementedError, ValueError) as e:  # corrupt, encrypted or exotic members,
        # names that are not UTF-8 though flagged so (UnicodeDecodeError)
        raise InvalidModelError(
            f"{path}: a zip archive (PyTorch/Keras) that is truncated or corrupt ({e}); "
            "re-export or re-download it"
        ) from None
    raise InvalidModelError(
        f"{path}: a zip archive, but not a TorchScript, ExportedProgram, torch.save or .keras "
        "archive"
    )


def _check_archive(path: Path, zf: zipfile.ZipFile) -> None:
    """Refuse a zip bomb from its central directory, before anything is decompressed.

    Raises:
        UnsafeModelError: Too many members, too much declared data, or a member whose declared
            size is far beyond what its compressed bytes could honestly hold.
    """
    infos = zf.infolist()
    if len(infos) > MAX_ARCHIVE_MEMBERS:
        raise UnsafeModelError(f"{path}: a zip with {len(infos):,} members (limit "
                               f"{MAX_ARCHIVE_MEMBERS:,}); not a model archive portkit opens")
    total = sum(i.file_size for i in infos)
    if total > MAX_ARCHIVE_BYTES:
        raise UnsafeModelError(f"{path}: its zip members declare {total / 2**30:.1f} GiB "
                               f"uncompressed (limit {MAX_ARCHIVE_BYTES / 2**30:.0f} GiB)")
    for i in infos:
        ratio = i.file_size / max(i.compress_size, 1)
        if i.file_size > 2**20 and ratio > MAX_COMPRESSION_RATIO:
            raise UnsafeModelError(
                f"{path}: zip member {i.filename!r} declares {i.file_size:,} bytes from "
                f"{i.compress_size:,} compressed (ratio {ratio:,.0f}, limit "
                f"{MAX_COMPRESSION_RATIO}): a zip bomb, not model weights")


def _sniff_pickle(path: Path, data: bytes, pickles: int = 1) -> Format:
    """State dict or pickled module, from the globals the pickles reference (never loading them).

    Args:
        path: The file, for messages.
        data: The pickle stream.
        pickles: How many consecutive pickles to read (torch's legacy format writes the magic
            number, protocol, system info and then the object, each a pickle of its own).
    """
    globals_seen: list[str] = []
    strings: list[str] = []
    position = 0
    for _ in range(pickles):
        try:
            for op, arg, pos in pickletools.genops(data[position:]):
                if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
                    strings.append(str(arg))
                elif op.name == "GLOBAL":
                    globals_seen.append(str(arg))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    globals_seen.append(f"{strings[-2]} {strings[-1]}")
                if op.name == "STOP":
                    position += pos + 1
                    break
        except (ValueError, IndexError) as e:
            raise InvalidModelError(
                f"{path}: a PyTorch pickle that is truncated or corrupt ({e}); re-export it"
            ) from None
    if all(g.startswith(_STATE_DICT_GLOBALS) for g in globals_seen):
        return Format.STATE_DICT
    return Format.TORCH_PICKLE


def _check_tflite_size(path: Path, head: bytes, size: int) -> None:
    root = int.from_bytes(head[:4], "little")
    if size < 16 or root >= size:
        raise InvalidModelError(
            f"{path}: a TFLite flatbuffer that is truncated ({size} bytes, root table at "
            f"offset {root}); re-export or re-download it"
        )


def _looks_like_onnx(head: bytes) -> bool:
    # ModelProto starts with ir_version (field 1, varint): tag 0x08, a small version, then
    # another ModelProto field tag.
    return (
        len(head) >= 3 and head[0] == 0x08 and 3 <= head[1] <= 20 and head[2] in _ONNX_SECOND_TAGS
    )
