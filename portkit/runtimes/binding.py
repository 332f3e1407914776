"""Binding a source model's tensors to an artifact's: by name, else by order; layout-aware.

Converters such as onnx2tf turn NCHW inputs and outputs into NHWC. A Binding records the axis
permutation that takes the source's array to the artifact's, so inputs are fed and outputs
compared in the right layout, and the report can say so. ``artifact_feeds`` turns a reference
sample into what an artifact's session takes.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np

from portkit.errors import PortkitError
from portkit.runtimes.base import Session
from portkit.specs import TensorSpec

_NAME_NOISE = re.compile(r"^(serving_default_)|(:\d+)$")


@dataclass(frozen=True)
class Binding:
    """A source tensor bound to an artifact tensor.

    Attributes:
        source: The source tensor's name.
        artifact: The artifact tensor's name.
        perm: Axes permutation with ``artifact == source.transpose(perm)``; None if identical.
    """

    source: str
    artifact: str
    perm: tuple[int, ...] | None = None

    def to_artifact(self, array: np.ndarray) -> np.ndarray:
        """A source-layout array in the artifact's layout."""
        return array if self.perm is None else np.ascontiguousarray(array.transpose(self.perm))

    def to_source(self, array: np.ndarray) -> np.ndarray:
        """An artifact-layout array in the source's layout."""
        return array if self.perm is None else array.transpose(np.argsort(self.perm))

    @property
    def layout_note(self) -> str | None:
        """``NCHW->NHWC`` style note, or None when the layout is unchanged."""
        if self.perm is None:
            return None
        if self.perm == channels_last(len(self.perm)):
            return _LAYOUT_NAMES.get(len(self.perm), "channels-first->channels-last")
        return f"axes {self.perm}"


_LAYOUT_NAMES = {3: "NCW->NWC", 4: "NCHW->NHWC", 5: "NCDHW->NDHWC"}


def channels_last(rank: int) -> tuple[int, ...]:
    """The permutation that moves axis 1 last: (0, 2, 3, 1) for rank 4."""
    return (0, *range(2, rank), 1)


def clean_name(name: str) -> str:
    """Drop TFLite's ``serving_default_`` prefix and ``:0`` suffix."""
    return _NAME_NOISE.sub("", name)


def _fits(shape: tuple[int, ...], target: tuple[int | None, ...] | None) -> bool:
    return target is None or (
        len(shape) == len(target) and all(t is None or s == t for s, t in zip(shape, target))
    )


def candidate_perms(shape: tuple[int, ...], target: tuple[int | None, ...] | None,
                    prefer_channels_last: bool = False) -> list[tuple[int, ...] | None]:
    """Permutations taking ``shape`` to ``target``, likeliest first (identity, channels-last, any).

    Args:
        shape: The source tensor's concrete shape.
        target: The artifact tensor's shape (None dims match anything).
        prefer_channels_last: Try channels-last before identity (the converter makes NHWC).

    Returns:
        Every fitting permutation, ``None`` standing for identity.
    """
    rank = len(shape)
    order: list[tuple[int, ...] | None] = [None]
    if rank >= 3:
        order.insert(1 if not prefer_channels_last else 0, channels_last(rank))
    if rank <= 6:
        order += [p for p in itertools.permutations(range(rank))
                  if p != tuple(range(rank)) and p != channels_last(rank)]
    found = []
    for perm in order:
        permuted = shape if perm is None else tuple(shape[i] for i in perm)
        if _fits(permuted, target):
            found.append(perm)
    return found


def pair_by_name(source: list[str], artifact: list[str]) -> list[tuple[str, str]]:
    """Pair names that match after cleaning; else pair in order.

    Raises:
        PortkitError: The counts differ.
    """
    cleaned = {clean_name(a): a for a in artifact}
    if len(cleaned) == len(artifact) and set(cleaned) == set(source):
        return [(s, cleaned[s]) for s in source]
    if len(source) != len(artifact):
        raise PortkitError(
            f"the source has {len(source)} tensors ({', '.join(source)}) but the artifact has "
            f"{len(artifact)} ({', '.join(artifact)})"
        )
    return list(zip(source, artifact))


def _free(spec: TensorSpec) -> tuple[int | None, ...] | None:
    """A spec's shape with its dynamic axes free (None): their sizes are only examples."""
    if spec.shape is None or not spec.dims:
        return spec.shape
    return tuple(None if d is not None else s for s, d in zip(spec.shape, spec.dims))


def bind_inputs(source: list[TensorSpec], artifact: list[TensorSpec],
                prefer_channels_last: bool = False) -> list[Binding]:
    """Bind each source input to an artifact input with the permutation that fits its shape.

    Raises:
        PortkitError: Counts differ or no permutation makes a shape fit.
    """
    art = {s.name: s for s in artifact}
    bindings = []
    for src_name, art_name in pair_by_name([s.name for s in source], [s.name for s in artifact]):
        src = next(s for s in source if s.name == src_name)
        shape = tuple(int(d) for d in src.shape or ())  # type: ignore[union-attr]
        perms = candidate_perms(shape, _free(art[art_name]), prefer_channels_last)
        if not perms:
            raise PortkitError(
                f"input {src_name}: the source takes {src.describe()} but the artifact's "
                f"{art[art_name].describe()} fits no axis order of it"
            )
        bindings.append(Binding(src_name, art_name, perms[0]))
    return bindings


def artifact_feeds(session: Session, bindings: list[Binding],
                   sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A reference sample in the artifact's input names, layout and dtypes (converters narrow
    dtypes: litert-torch turns int64 into int32)."""
    dtypes = {s.name: s.dtype for s in session.inputs}
    return {b.artifact: _cast(b.to_artifact(sample[b.source]), dtypes[b.artifact])
            for b in bindings}


def bound_feeds(session: Session, specs: list[TensorSpec], sample: dict[str, np.ndarray],
                prefer_channels_last: bool = False) -> dict[str, np.ndarray]:
    """``sample`` (named and shaped as ``specs``) bound to ``session``'s inputs and fed as
    ``artifact_feeds`` does: the one call for a single sample."""
    return artifact_feeds(session, bind_inputs(specs, session.inputs, prefer_channels_last),
                          sample)


def _cast(array: np.ndarray, dtype: str) -> np.ndarray:
    """Cast to the artifact's dtype, except float to an integer type: a quantized input's
    session quantizes float feeds itself."""
    if not dtype or (array.dtype.kind == "f" and np.dtype(dtype).kind in "iu"):
        return array
    return array.astype(dtype, copy=False)
