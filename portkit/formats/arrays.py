"""Array files (``--inputs``, ``--calibration``, ``--eval``): an ``.npz``, one ``.npy`` or a
folder of ``.npy`` files, read with numpy alone and checked before any array is loaded.

Every ``.npy`` header is read first (the zip's directory and each member's first bytes, never
its data): a member that is no ``.npy``, an object dtype, a header declaring more data than its
member holds, a member over 64 MiB that inflates far beyond its compressed bytes (the
zip-bomb ratio model archives meet in ``formats.sniff``) or more data in all than
``bounds.max_array_bytes`` is refused before anything is allocated. Reading a file so costs at
most that bound, in the CLI process as in a worker.
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from numpy.lib import format as npy

from portkit.bounds import MEMORY_ENV, max_array_bytes
from portkit.errors import UsageError
from portkit.formats.sniff import MAX_ARCHIVE_MEMBERS, MAX_COMPRESSION_RATIO

_FIX = "write it with numpy.savez(path, NAME=array, ...)"
_UNREAD = "cannot read it as .npz or .npy files"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first member, or an empty zip
_HEADERS = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}
# Members smaller than this may inflate any amount (masks of ones compress 1000x); past it, the
# archives' ratio rule holds. Memory is bounded by max_array_bytes either way.
_BOMB_FLOOR = 64 * 2**20


def listed(names: Iterable[str], shown: int = 5) -> str:
    """``a, b, c, d, e and 9,995 more``: the first ``shown`` names, and how many others."""
    names = list(names)
    more = f" and {len(names) - shown:,} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


@dataclass(frozen=True)
class _Header:
    """One ``.npy``'s header, read without its data.

    Attributes:
        name: The zip member or the file, as errors name it (``member 'x.npy'``).
        shape: The array's declared shape.
        dtype: Its declared dtype.
    """

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        """The data the header declares, in bytes."""
        return math.prod(self.shape) * self.dtype.itemsize

    def describe(self) -> str:
        """``32000000x8 float32 array (1,024,000,000 bytes)``."""
        shape = "x".join(str(d) for d in self.shape) or "scalar"
        return f"{shape} {self.dtype.name} array ({self.nbytes:,} bytes)"


def read_arrays(path: str, what: str = "--inputs", ignore: Sequence[str] = (),
                only: Collection[str] | None = None) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file (one ``.npy`` file: the array ``arr_0``; a folder of
    ``.npy`` files: one array, the samples stacked, ``""``), every header checked first (see
    the module's docstring); object arrays are never unpickled.

    Args:
        path: The file or folder.
        what: The flag named in errors.
        ignore: Arrays left out (an ``--eval`` file's inputs, where only its labels count).
        only: The arrays to read (None: all but ``ignore``; ``()``: none, as
            ``check_arrays``); the others' headers are still checked.

    Returns:
        Array name (the ``.npz`` member less ``.npy``) -> array, in the file's order.

    Raises:
        UsageError: The file can't be read as arrays: no ``.npz``/``.npy``, a member that is
            no ``.npy``, a damaged or truncated one, object arrays, a zip bomb, or more data
            than ``bounds.max_array_bytes``.
    """
    where = f"{what} {path}"
    if not os.path.exists(path):
        raise UsageError(f"{where}: no such file or folder; check the path")
    try:
        if Path(path).is_dir():
            stacked = _read_folder(Path(path), where, load=only is None or "" in only)
            return {} if stacked is None else {"": stacked}
        with open(path, "rb") as f:
            magic = f.read(len(npy.MAGIC_PREFIX))
        if magic[:4] in _ZIP_MAGIC:
            return _read_npz(Path(path), where, ignore, only)
        if magic == npy.MAGIC_PREFIX:
            with open(path, "rb") as f:
                _check_total(where, [_header(f, "the file", Path(path).stat().st_size, where)])
                if only is not None and "arr_0" not in only:
                    return {}
                f.seek(0)
                return {"arr_0": npy.read_array(f, allow_pickle=False)}
        raise UsageError(f"{where}: neither an .npz (a zip of .npy arrays) nor an .npy file "
                         f"(it begins {magic!r}); {_FIX}")
    except (UsageError, MemoryError):  # out of memory within the bound: the machine's limit
        raise
    except Exception as e:  # noqa: BLE001 - damage fails in zipfile, zlib, the header parser...
        raise UsageError(f"{where}: {_UNREAD}: {type(e).__name__}: {e}; {_FIX}") from None


def check_arrays(path: str | Path, what: str = "--inputs") -> None:
    """Refuse, before any work, an array file ``read_arrays`` would refuse: every header and
    the total checked, no array loaded.

    Raises:
        UsageError: As ``read_arrays``.
    """
    read_arrays(str(path), what, only=())


def _read_npz(path: Path, where: str, ignore: Sequence[str], only: Collection[str] | None
              ) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        if len(infos) > MAX_ARCHIVE_MEMBERS:
            raise UsageError(f"{where}: a zip of {len(infos):,} members (limit "
                             f"{MAX_ARCHIVE_MEMBERS:,}); save fewer arrays, samples stacked on "
                             "a first axis")
        if sum(i.compress_size for i in infos) > path.stat().st_size:
            raise UsageError(f"{where}: {_UNREAD}: its zip directory "
                             "declares more compressed data than the file holds (truncated or "
                             f"damaged); {_FIX}")
        headers = []
        for info in infos:
            if not info.filename.endswith(".npy"):
                raise UsageError(f"{where}: {_UNREAD}: member {info.filename!r} is not an .npy "
                                 f"array (an .npz holds NAME.npy members only); {_FIX}")
            with zf.open(info) as f:
                header = _header(f, f"member {info.filename!r}", info.file_size, where)
            ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size > _BOMB_FLOOR and ratio > MAX_COMPRESSION_RATIO:
                raise UsageError(
                    f"{where}: {header.name} declares a {header.describe()} in "
                    f"{info.compress_size:,} compressed bytes (ratio {ratio:,.0f}, limit "
                    f"{MAX_COMPRESSION_RATIO}): a zip bomb, not arrays; if the values are real, "
                    "save them uncompressed (numpy.savez, not numpy.savez_compressed)")
            headers.append((info, header))
        keep = [(_key(i.filename), i, h) for i, h in headers
                if _key(i.filename) not in ignore and (only is None or _key(i.filename) in only)]
        _check_total(where, [h for _, _, h in keep])
        found: dict[str, np.ndarray] = {}
        for key, info, _ in keep:
            with zf.open(info) as f:
                found[key] = npy.read_array(f, allow_pickle=False)
        return found


def _key(member: str) -> str:
    """The array's name: its member's less ``.npy`` (as ``numpy.savez`` names members)."""
    return member[:-len(".npy")]


def _read_folder(folder: Path, where: str, load: bool = True) -> np.ndarray | None:
    """A folder's ``.npy`` files, one sample each, stacked on a new first axis in name order,
    into one array allocated once (``load`` False: their headers checked, None returned)."""
    files = sorted(folder.glob("*.npy"))
    if not files:
        raise UsageError(f"{where}: the folder holds no .npy files")
    headers = []
    for file in files:
        with open(file, "rb") as f:
            headers.append(_header(f, f"file {file.name!r}", file.stat().st_size, where))
    shapes = {h.shape for h in headers}
    if len(shapes) > 1:
        seen = listed(f"{h.name} {'x'.join(map(str, h.shape)) or 'scalar'}" for h in headers)
        raise UsageError(f"{where}: the .npy files hold arrays of {len(shapes)} shapes ({seen}); "
                         "give one sample per file, every one of the same shape")
    dtype = np.result_type(*(h.dtype for h in headers))
    stacked = _Header(f"the {len(files)} files", (len(files), *headers[0].shape), dtype)
    _check_total(where, [stacked])
    if not load:
        return None
    out = np.empty(stacked.shape, dtype)
    for i, file in enumerate(files):
        with open(file, "rb") as f:
            out[i] = npy.read_array(f, allow_pickle=False)
    return out


def _header(f: IO[bytes], name: str, size: int, where: str) -> _Header:
    """The header of the ``.npy`` ``f`` (``size`` bytes, at its start), its data unread.

    Raises:
        UsageError: ``f`` is no ``.npy``, its header is damaged, it holds object arrays, or it
            holds less data than its header declares.
    """
    start = f.read(len(npy.MAGIC_PREFIX) + 2)
    if not start.startswith(npy.MAGIC_PREFIX) or len(start) < 8:
        raise UsageError(f"{where}: {_UNREAD}: {name} is not an .npy array (it begins "
                         f"{start!r}); {_FIX}")
    version = (start[-2], start[-1])
    if version not in _HEADERS:
        raise UsageError(f"{where}: {_UNREAD}: {name} is an .npy of version "
                         f"{version[0]}.{version[1]}, which portkit doesn't read; {_FIX}")
    try:
        shape, _, dtype = _HEADERS[version](f)
    except ValueError as e:
        raise UsageError(f"{where}: {_UNREAD}: {name} has a "
                         f"damaged .npy header ({e}); {_FIX}") from None
    if dtype.hasobject:
        raise UsageError(f"{where}: {_UNREAD}: {name} holds object arrays (portkit never "
                         "unpickles them; save numeric arrays)")
    header = _Header(name, tuple(shape), dtype)
    if any(d < 0 for d in header.shape):
        raise UsageError(f"{where}: {_UNREAD}: {header.name} has a damaged .npy header (shape "
                         f"{header.shape}); {_FIX}")
    held = size - f.tell()
    if held < header.nbytes:
        raise UsageError(f"{where}: {_UNREAD}: {header.name} declares a {header.describe()} "
                         f"but holds {held:,} bytes of data: truncated or damaged; {_FIX}")
    return header


def _check_total(where: str, headers: Sequence[_Header]) -> None:
    """Refuse more array data than one file may hold (``bounds.max_array_bytes``).

    Raises:
        UsageError: The headers declare more in all, naming the largest array.
    """
    total, limit = sum(h.nbytes for h in headers), max_array_bytes()
    if total > limit:
        largest = max(headers, key=lambda h: h.nbytes)
        raise UsageError(
            f"{where}: its arrays declare {total:,} bytes in all (the largest: {largest.name}, "
            f"a {largest.describe()}), more than portkit reads from one file, "
            f"{limit / 2**20:,.0f} MiB, a quarter of the workers' memory limit; give fewer "
            f"samples, or raise {MEMORY_ENV}=MB if the machine has the memory")
