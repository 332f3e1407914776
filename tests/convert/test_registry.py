"""Route planning over the registered edges (pure logic)."""

from __future__ import annotations

from pathlib import Path

import pytest

from portkit.convert import registry
from portkit.errors import InternalError, UsageError
from portkit.formats import Format


def names(src: Format, dst: Format) -> list[str]:
    return [r.name for r in registry.plan(src, dst)]


def test_direct_route_first_then_onnx_fallbacks() -> None:
    assert names(Format.TORCHSCRIPT, Format.TFLITE) == [
        "litert-torch", "torch.onnx-legacy+onnx2tf", "torch.onnx+onnx2tf"]
    assert names(Format.EXPORTED_PROGRAM, Format.TFLITE) == [
        "litert-torch", "torch.onnx+onnx2tf", "torch.jit.trace+torch.onnx-legacy+onnx2tf"]


def test_no_detours() -> None:
    # litert-torch reads .pt2 itself: going through TorchScript first is never planned.
    assert "torch.jit.trace+litert-torch" not in names(Format.EXPORTED_PROGRAM, Format.TFLITE)


def test_onnx_routes() -> None:
    assert names(Format.TORCHSCRIPT, Format.ONNX) == ["torch.onnx-legacy", "torch.onnx"]
    assert names(Format.ONNX, Format.TFLITE) == ["onnx2tf"]
    assert names(Format.EXPORTED_PROGRAM, Format.TORCHSCRIPT) == ["torch.jit.trace"]


def test_routes_never_revisit_a_format() -> None:
    for route in registry.plan(Format.EXPORTED_PROGRAM, Format.TFLITE, max_hops=5):
        seen = [route.edges[0].sources] + [e.target for e in route.edges]
        assert len({e.target for e in route.edges}) == len(route.edges), seen


def test_onnx2tf_routes_are_channels_last() -> None:
    routes = registry.plan(Format.TORCHSCRIPT, Format.TFLITE)
    assert [r.channels_last for r in routes] == [False, True, True]


def test_pick_unknown_route_lists_the_known_ones() -> None:
    routes = registry.plan(Format.TORCHSCRIPT, Format.TFLITE)
    assert registry.pick(routes, "torch.onnx+onnx2tf")[0].name == "torch.onnx+onnx2tf"
    with pytest.raises(UsageError, match="routes: litert-torch, torch.onnx-legacy\\+onnx2tf"):
        registry.pick(routes, "nope")


def test_registration_is_checked() -> None:
    def fn(src: Path, fmt: Format, dst: Path, inputs: list) -> str:
        return ""

    with pytest.raises(InternalError, match="two conversion edges"):
        registry.register_edge(tool="onnx2tf", sources=(Format.ONNX,), target=Format.TFLITE,
                               cost=1)(fn)
    with pytest.raises(InternalError, match="must be non-empty"):
        registry.register_edge(tool="loop", sources=(Format.ONNX,), target=Format.ONNX, cost=1)(fn)
