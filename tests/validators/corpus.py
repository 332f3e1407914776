"""A labelled corpus of artifacts: faithful ones (real converters, outputs from ~1e-3 to ~1e3 in
magnitude) and broken ones (converters that exit 0 while writing wrong numbers, and a 1% change
of one conv's weights). The parity policies are designed on it: ``test_corpus.py`` checks every
verdict, ``benchmarks/tolerance.py`` records the margins the README quotes.

Every model is built at test time; a case makes its artifact with ``portkit convert`` by its
route, whose verdict is the one under test, or perturbs a faithful artifact and asks
``portkit validate``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portkit.fixtures import FIXTURES, torch_models
from portkit.runtimes.worker import Pool, task
from portkit.specs import make_inputs, parse_inputs


@dataclass(frozen=True)
class Case:
    """One labelled artifact.

    Attributes:
        name: The case's id.
        build: The source model's builder (a torch module, or a fixture name for Keras).
        inputs: ``--input`` flags of the source.
        kind: The source's file kind: ``pt2``, ``torchscript`` or ``keras``.
        target: The artifact's format.
        route: The route that makes it.
        faithful: The label: True when the artifact computes what its source does.
        why: What the case exercises (for broken ones: what the converter gets wrong).
        perturb: Scale one conv's weights in the ONNX artifact by this factor (1.0: none).
        quantize: ``fp16`` for a float16 artifact (judged by the fp16 policy).
    """

    name: str
    build: Callable[[], Any] | str
    inputs: tuple[str, ...]
    kind: str
    target: str
    route: str
    faithful: bool
    why: str
    perturb: float = 1.0
    quantize: str | None = None


def _scaled(build: Callable[[], Any], factor: float) -> Callable[[], Any]:
    """A builder whose model's last layer (conv or linear) has weights and bias times
    ``factor``: outputs at another magnitude, as trained models give."""
    def make() -> Any:
        import torch

        torch.manual_seed(0)
        model = build().eval()
        last = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear,
                                                             torch.nn.ConvTranspose2d))][-1]
        with torch.no_grad():
            last.weight.mul_(factor)
            if last.bias is not None:
                last.bias.mul_(factor)
        return model
    make.__name__ = f"{build.__name__}_x{factor:g}"
    return make


def _fixture(name: str) -> Callable[[], Any]:
    def make() -> Any:
        return FIXTURES[name].module()
    make.__name__ = name
    return make


def _broken(op: str) -> Callable[[], Any]:
    """A conv followed by one op that a converter gets wrong."""
    def make() -> Any:
        import torch
        import torch.nn.functional as F

        ops = {
            "cumsum": lambda y: torch.cumsum(y, dim=3),
            "flip": lambda y: torch.flip(y, dims=[3]),
            "fmod": lambda y: torch.fmod(y, 0.3),
            "align_corners": lambda y: F.interpolate(y, scale_factor=2, mode="bilinear",
                                                     align_corners=True),
            "unfold": lambda y: F.unfold(y, kernel_size=2, stride=2),
            "roll": lambda y: torch.roll(y, shifts=2, dims=3),
            "pad": lambda y: F.pad(y, (1, 2, 0, 1), value=0.5),
            "strided_slice": lambda y: y[:, 1:3, ::2, 1::3],
        }

        class ConvThen(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return ops[op](self.conv(x))

        torch.manual_seed(0)
        return ConvThen().eval()
    make.__name__ = op
    return make


def _segmenter(pool_by: str = "interpolate") -> Callable[[], Any]:
    def make() -> Any:
        from portkit.fixtures import Fixture

        return Fixture("segmenter", lambda: torch_models.segmenter(pool_by), (), "").module()
    make.__name__ = f"segmenter_{pool_by}"
    return make


_IMAGE = ("x:1x3x32x32",)
_SMALL = ("x:1x3x8x8",)
_SEG = ("x:1x3x256x256",)
_ONNX2TF = "torch.onnx+onnx2tf"
_LEGACY = "torch.onnx-legacy+onnx2tf"

CASES: tuple[Case, ...] = (
    # Faithful: several converters, outputs from ~1e-3 to ~1e3.
    Case("segmenter-onnx", _segmenter(), _SEG, "pt2", "onnx", "torch.onnx", True,
         "21 logits per pixel in the hundreds (DeepLabV3-MobileNetV3 layout)"),
    Case("segmenter-litert", _segmenter(), _SEG, "pt2", "tflite", "litert-torch", True,
         "the same, through litert-torch"),
    Case("segmenter-legacy-onnx", _segmenter(), _SEG, "torchscript", "onnx", "torch.onnx-legacy",
         True, "the same, traced and exported by the legacy exporter"),
    Case("cnn-x1000-litert", _scaled(_fixture("cnn"), 1e3), _IMAGE, "pt2", "tflite",
         "litert-torch", True, "class scores ~1e3"),
    Case("cnn-x0.001-onnx2tf", _scaled(_fixture("cnn"), 1e-3), _IMAGE, "pt2", "tflite", _ONNX2TF,
         True, "class scores ~1e-3"),
    Case("attention-x100-onnx", _scaled(_fixture("attention"), 1e2), ("tokens:1x6x16",), "pt2",
         "onnx", "torch.onnx", True, "a token sequence ~1e2"),
    Case("attention-litert", _fixture("attention"), ("tokens:1x6x16",), "pt2", "tflite",
         "litert-torch", True, "layer norm, softmax, batched matmul"),
    Case("lstm-litert", _fixture("lstm"), ("seq:1x10x8",), "pt2", "tflite", "litert-torch", True,
         "a 2-layer LSTM (outputs ~1e-1)"),
    Case("two-io-legacy-onnx", _fixture("two_io"), ("image:1x3x16x16", "vec:1x8"), "torchscript",
         "onnx", "torch.onnx-legacy", True, "two outputs, one a feature map"),
    Case("upsample-x0.01-onnx2tf", _scaled(_fixture("upsample"), 1e-2), ("x:1x3x16x16",), "pt2",
         "tflite", _ONNX2TF, True, "a transposed conv's map ~1e-2, NCHW->NHWC"),
    Case("keras-cnn-tflite", "keras_cnn", ("image:1x32x32x3",), "keras", "tflite",
         "tflite-converter", True, "Keras softmax scores through TFLiteConverter"),
    Case("keras-cnn-tf2onnx", "keras_cnn", ("image:1x32x32x3",), "keras", "onnx", "tf2onnx", True,
         "the same through tf2onnx"),
    Case("keras-transformer-tflite", "keras_transformer", ("sequence:1x8x16",), "keras", "tflite",
         "tflite-converter", True, "multi-head attention, exact GELU"),
    Case("keras-cnn-fp16", "keras_cnn", ("image:1x32x32x3",), "keras", "tflite",
         "tflite-converter", True, "float16 weights (fp16 policy)", quantize="fp16"),
    Case("keras-transformer-fp16", "keras_transformer", ("sequence:1x8x16",), "keras", "tflite",
         "tflite-converter", True, "float16 weights (fp16 policy)", quantize="fp16"),
    # Broken: converters that exit 0 with wrong numbers, and 1% changes of one conv's weights.
    Case("cumsum-onnx2tf", _broken("cumsum"), _SMALL, "pt2", "tflite", _ONNX2TF, False,
         "onnx2tf: cumsum along W runs along another axis"),
    Case("flip-onnx2tf", _broken("flip"), _SMALL, "pt2", "tflite", _ONNX2TF, False,
         "onnx2tf: flip along W flips another axis"),
    Case("fmod-onnx2tf", _broken("fmod"), _SMALL, "pt2", "tflite", _ONNX2TF, False,
         "onnx2tf: fmod of negatives takes the divisor's sign (Python's %)"),
    Case("align-corners-onnx2tf", _broken("align_corners"), _SMALL, "pt2", "tflite", _ONNX2TF,
         False, "onnx2tf: bilinear upsampling with align_corners=True"),
    Case("unfold-legacy-onnx2tf", _broken("unfold"), _SMALL, "torchscript", "tflite", _LEGACY,
         False, "onnx2tf on the legacy exporter's unfold (im2col)"),
    Case("roll-legacy-onnx2tf", _broken("roll"), _SMALL, "torchscript", "tflite", _LEGACY, False,
         "onnx2tf on the legacy exporter's roll along W"),
    Case("pad-legacy-onnx2tf", _broken("pad"), _SMALL, "torchscript", "tflite", _LEGACY, False,
         "onnx2tf on the legacy exporter's ConstantPad2d: wrong output shape"),
    Case("strided-slice-legacy-onnx2tf", _broken("strided_slice"), _SMALL, "torchscript",
         "tflite", _LEGACY, False, "onnx2tf on a strided channel slice: wrong output shape"),
    Case("segmenter-expand-litert", _segmenter("expand"), _SEG, "pt2", "tflite", "litert-torch",
         False, "litert-torch: a pooled 1x1 map expanded and concatenated (cosine 0.97)"),
    Case("segmenter-conv-1.01", _segmenter(), _SEG, "pt2", "onnx", "torch.onnx", False,
         "one conv's weights x1.01 in a map of logits in the hundreds", perturb=1.01),
    Case("cnn-x1000-conv-1.01", _scaled(_fixture("cnn"), 1e3), _IMAGE, "pt2", "onnx",
         "torch.onnx", False, "one conv's weights x1.01, scores ~1e3", perturb=1.01),
    Case("cnn-x0.001-conv-1.01", _scaled(_fixture("cnn"), 1e-3), _IMAGE, "pt2", "onnx",
         "torch.onnx", False, "one conv's weights x1.01, scores ~1e-3", perturb=1.01),
    Case("upsample-conv-1.01", _fixture("upsample"), ("x:1x3x16x16",), "pt2", "onnx",
         "torch.onnx", False, "one conv's weights x1.01 before a transposed conv", perturb=1.01),
)

BY_NAME = {c.name: c for c in CASES}


@task
def save_source(name: str, folder: str) -> Path:
    """Write the source model of case ``name`` into ``folder`` (a worker task: frameworks stay
    out of the test process)."""
    case = BY_NAME[name]
    if isinstance(case.build, str):
        return FIXTURES[case.build].save(folder, case.kind)
    import torch

    model = case.build()
    specs = [dataclasses.replace(s, dtype=s.dtype or "float32") for s in parse_inputs(case.inputs)]
    args = tuple(torch.from_numpy(a) for a in make_inputs(specs, seed=0).values())
    if case.kind == "pt2":
        path = Path(folder) / f"{case.name}.pt2"
        torch.export.save(torch.export.export(model, args), str(path))
    else:
        path = Path(folder) / f"{case.name}.pt"
        torch.jit.save(torch.jit.trace(model, args), str(path))
    return path


@task
def perturb_conv(path: str, factor: float) -> str:
    """Scale the weights of the last Conv node of an ONNX model by ``factor``, in place;
    returns the node's name."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(path)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    node = convs[-1]
    for i, init in enumerate(model.graph.initializer):
        if init.name == node.input[1]:
            scaled = numpy_helper.to_array(init) * factor
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(scaled, init.name))
            onnx.save(model, path)
            return node.name
    raise ValueError(f"{path}: the weights of {node.name} are not an initializer")


def judge(case: Case, folder: Path, pool: Pool) -> tuple[Any, Path, Path]:
    """Build a case's source in ``folder``, convert it by the case's route, and judge the
    artifact under the default policy for its precision: ``portkit convert``'s own verdict, or
    for a perturbed artifact ``portkit validate``'s.

    Returns:
        The report (``.passed`` is the verdict), the artifact and the source.
    """
    from portkit import api

    source = pool.call("corpus", save_source, timeout=600, what=case.name, name=case.name,
                       folder=str(folder))
    artifact = folder / f"{case.name}.{case.target}"
    report = api.convert(source, case.target, artifact, inputs=case.inputs, route=case.route,
                         quantize=case.quantize, workers=pool)
    assert report.artifact is not None, report.routes_tried[-1].error
    if case.perturb != 1.0:
        assert report.passed, report.routes_tried[-1].error
        pool.call("corpus", perturb_conv, timeout=120, what=case.name, path=str(artifact),
                  factor=case.perturb)
        report = api.validate(artifact, source, inputs=case.inputs, workers=pool)
    return report, artifact, source
