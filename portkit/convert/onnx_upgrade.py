"""ONNX -> ONNX of a current opset with ``onnx.version_converter``: the preparation of legacy
ONNX files.

ONNX Runtime 1.32 no longer runs opsets below 7 ("could not load it"), and onnx2tf handles
today's operator versions (``BatchNormalization``-6 carries ``is_test``/``spatial``, ``Pad``-2
keeps its pads in an attribute...). A source below ``MIN_OPSET`` is upgraded to
``TARGET_OPSET`` as the first hop of every route, shown in the report (``onnx-upgrade+onnx2tf``);
the artifact is still compared with the original file, run by the first runtime that loads it
(``onnx-reference`` when ONNX Runtime won't).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from portkit.convert.onnx_opset import opset
from portkit.convert.registry import register_edge
from portkit.errors import ConversionError
from portkit.formats import Format
from portkit.options import ConvertOptions
from portkit.specs import TensorSpec

MIN_OPSET = 7  # the oldest ONNX Runtime guarantees, and below which 1.32 has no kernels
TARGET_OPSET = 13


def needs_upgrade(path: Path, inputs: Callable[[], list[TensorSpec]]) -> bool:
    """Whether ``path`` imports an opset below ``MIN_OPSET`` (``registry.When``; the file says,
    ``inputs`` is not needed)."""
    return opset(path) < MIN_OPSET


@register_edge(tool="onnx-upgrade", sources=(Format.ONNX,), target=Format.ONNX, cost=0.1,
               when=needs_upgrade, opsets=(TARGET_OPSET, TARGET_OPSET))
def upgrade(src: Path, fmt: Format, dst: Path, inputs: list[TensorSpec],
            options: ConvertOptions) -> str:
    """``convert_version`` to ``TARGET_OPSET``; the IR version raised to what that opset needs,
    and weights no longer listed among the graph's inputs (as IR version 3 required)."""
    import onnx
    from onnx import version_converter

    from portkit.safety import check_onnx

    check_onnx(src)
    model = onnx.load(str(src))
    old = opset(src)
    try:
        new = version_converter.convert_version(model, TARGET_OPSET)
    except Exception as e:  # noqa: BLE001 - the converter raises bare RuntimeErrors
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise ConversionError(f"{src}: onnx.version_converter could not take opset {old} to "
                              f"{TARGET_OPSET} ({first}); re-export the model from its framework "
                              "with a current opset") from None
    new.ir_version = max(new.ir_version, onnx.helper.find_min_ir_version_for(
        list(new.opset_import)))
    weights = {t.name for t in new.graph.initializer}
    kept = [v for v in new.graph.input if v.name not in weights]
    del new.graph.input[:]
    new.graph.input.extend(kept)
    onnx.checker.check_model(new, full_check=True)
    onnx.save(new, str(dst))
    return f"onnx.version_converter: opset {old} -> {TARGET_OPSET}"
