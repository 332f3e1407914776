"""Route planning over the registered edges (pure logic)."""

from __future__ import annotations

from pathlib import Path

import pytest

from portkit.convert import registry
from portkit.errors import InternalError, UsageError
from portkit.formats import Format
from portkit.policies import Quantize


def names(src: Format, dst: Format) -> list[str]:
    return [r.name for r in registry.plan(src, dst)]


def test_direct_route_first_then_onnx_fallbacks() -> None:
    assert names(Format.TORCHSCRIPT, Format.TFLITE) == [
        "litert-torch", "torch.onnx-legacy+onnx2tf", "torch.onnx+onnx2tf",
        "torch.onnx-legacy+onnx2tf+tflite-converter", "torch.onnx+onnx2tf+tflite-converter"]
    assert names(Format.EXPORTED_PROGRAM, Format.TFLITE)[:3] == [
        "litert-torch", "torch.onnx+onnx2tf", "torch.onnx+onnx2tf+tflite-converter"]


def test_no_detours() -> None:
    # litert-torch reads .pt2 itself: going through TorchScript first is never planned.
    assert "torch.jit.trace+litert-torch" not in names(Format.EXPORTED_PROGRAM, Format.TFLITE)


def test_onnx_routes() -> None:
    assert names(Format.TORCHSCRIPT, Format.ONNX) == [
        "torch.onnx-legacy", "torch.onnx", "litert-torch+tf2onnx"]
    assert names(Format.ONNX, Format.TFLITE) == ["onnx2tf", "onnx2tf+tflite-converter"]
    assert names(Format.EXPORTED_PROGRAM, Format.TORCHSCRIPT) == ["torch.jit.trace"]


def test_routes_never_revisit_a_format() -> None:
    for route in registry.plan(Format.EXPORTED_PROGRAM, Format.TFLITE, max_hops=5):
        seen = [route.edges[0].sources] + [e.target for e in route.edges]
        assert len({e.target for e in route.edges}) == len(route.edges), seen


def test_onnx2tf_routes_are_channels_last() -> None:
    routes = registry.plan(Format.TORCHSCRIPT, Format.TFLITE)
    assert [r.channels_last for r in routes] == [False, True, True, True, True]


def test_tensorflow_routes_plan_themselves() -> None:
    for src in (Format.KERAS, Format.H5, Format.SAVEDMODEL):
        assert names(src, Format.TFLITE)[0] == "tflite-converter"
        assert names(src, Format.ONNX) == ["tf2onnx"]
    assert names(Format.KERAS, Format.SAVEDMODEL)[0] == "keras.export"
    assert names(Format.TFLITE, Format.ONNX) == ["tf2onnx"]
    assert names(Format.ONNX, Format.SAVEDMODEL) == ["onnx2tf"]


def test_quantize_keeps_only_routes_whose_last_hop_honours_the_mode() -> None:
    def names(src: Format, mode: Quantize) -> list[str]:
        return [r.name for r in registry.plan(src, Format.TFLITE, quantize=mode)]

    for mode in Quantize:  # int4: a language model's, which no planned route takes
        assert names(Format.KERAS, mode) == ([] if mode is Quantize.INT4 else
                                             ["tflite-converter"])
    detour = ["torch.onnx-legacy+onnx2tf+tflite-converter", "torch.onnx+onnx2tf+tflite-converter"]
    # The fast route (litert-torch, then ai-edge-quantizer) first; the ONNX detour the fallback.
    for mode in (Quantize.DYNAMIC, Quantize.INT8, Quantize.INT16X8):
        assert names(Format.TORCHSCRIPT, mode) == ["litert-torch", *detour]
    assert names(Format.TORCHSCRIPT, Quantize.FP16) == detour  # ai-edge-quantizer has no fp16
    assert registry.plan(Format.KERAS, Format.ONNX, quantize=Quantize.INT8) == []


def test_pick_unknown_route_lists_the_known_ones() -> None:
    routes = registry.plan(Format.TORCHSCRIPT, Format.TFLITE)
    assert registry.pick(routes, "torch.onnx+onnx2tf")[0].name == "torch.onnx+onnx2tf"
    with pytest.raises(UsageError, match="routes: litert-torch, torch.onnx-legacy\\+onnx2tf"):
        registry.pick(routes, "nope")


def test_registration_is_checked() -> None:
    def fn(src: Path, fmt: Format, dst: Path, inputs: list, options: object) -> str:
        return ""

    # One tool may have an edge per target (onnx2tf: TFLite and SavedModel), not two to one.
    with pytest.raises(InternalError, match="two conversion edges"):
        registry.register_edge(tool="onnx2tf", sources=(Format.ONNX,), target=Format.TFLITE,
                               cost=1)(fn)
    with pytest.raises(InternalError, match="must be non-empty"):
        registry.register_edge(tool="loop", sources=(Format.ONNX,), target=Format.ONNX, cost=1)(fn)
    # A format to itself only as a preparation (``when``), which reads nothing else.
    with pytest.raises(InternalError, match="preparation 'prep'"):
        registry.register_edge(tool="prep", sources=(Format.ONNX, Format.TFLITE),
                               target=Format.ONNX, cost=1, when=lambda path, inputs: True)(fn)


def test_preparations_are_never_routed_through() -> None:
    assert [e.tool for e in registry.preparations(Format.ONNX)] == ["onnx-upgrade",
                                                                    "pool-rewrite"]
    assert [e.tool for e in registry.preparations(Format.EXPORTED_PROGRAM)] == ["pool-rewrite"]
    assert [e.tool for e in registry.preparations(Format.TORCHSCRIPT)] == ["pool-rewrite"]
    for src in (Format.ONNX, Format.TORCHSCRIPT, Format.EXPORTED_PROGRAM, Format.KERAS):
        for dst in (Format.TFLITE, Format.SAVEDMODEL, Format.ONNX):
            if src is not dst:
                assert not any("onnx-upgrade" in n or "pool-rewrite" in n
                               for n in names(src, dst))
    routes = registry.prepare(registry.plan(Format.ONNX, Format.TFLITE), ["onnx-upgrade"],
                              Format.ONNX)
    assert [r.name for r in routes] == ["onnx-upgrade+onnx2tf",
                                        "onnx-upgrade+onnx2tf+tflite-converter"]
    assert [r.channels_last for r in routes] == [True, True]


def test_variants_are_listed_after_their_route_and_checked_when_run() -> None:
    from portkit.options import ConvertOptions

    routes = registry.plan(Format.EXPORTED_PROGRAM, Format.TFLITE, variants=True)
    names = [r.name for r in routes]
    assert names[:2] == ["litert-torch", "litert-torch[nhwc-io]"]
    assert routes[1].channels_last and not routes[0].channels_last
    assert "litert-torch[nhwc-io]" not in [
        r.name for r in registry.plan(Format.EXPORTED_PROGRAM, Format.TFLITE)]
    # A variant that only changes which ops are quantized: only for int8 and int16x8.
    assert "litert-torch[int8-compute]" not in names

    def quantized(mode: Quantize) -> list[str]:
        return [r.name for r in registry.plan(Format.EXPORTED_PROGRAM, Format.TFLITE,
                                              quantize=mode, variants=True)]

    assert quantized(Quantize.INT8)[:3] == [
        "litert-torch", "litert-torch[nhwc-io]", "litert-torch[int8-compute]"]
    assert "litert-torch[int8-compute]" in quantized(Quantize.INT16X8)
    assert "litert-torch[int8-compute]" not in quantized(Quantize.DYNAMIC)
    with pytest.raises(InternalError, match="no variant 'nope'"):
        registry.run_edge("litert-torch", Format.TFLITE, "x.pt2", Format.EXPORTED_PROGRAM,
                          "y.tflite", [], ConvertOptions(variant="nope"))


def test_route_names_join_the_tools_and_append_the_variant() -> None:
    def edge(tool: str, channels_last: bool = False) -> registry.Edge:
        return registry.Edge(tool, (Format.ONNX,), Format.TFLITE, 1.0, lambda *a: "",
                             channels_last)

    plain = registry.Route((edge("a"), edge("b")))
    assert (plain.name, plain.cost, plain.channels_last) == ("a+b", 2.0, False)
    nhwc = registry.Route((edge("a"),), registry.Variant("nhwc", "", channels_last=True))
    assert (nhwc.name, nhwc.channels_last) == ("a[nhwc]", True)
    assert registry.Route((edge("a"), edge("b", channels_last=True))).channels_last
