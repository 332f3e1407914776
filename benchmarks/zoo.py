"""The benchmark zoo: real architectures with random weights, built at run time (nothing is
downloaded; no model binary is committed).

PyTorch models come from ``transformers`` configs (pure PyTorch; torchvision's wheel for torch
2.13 is a CUDA build that can't import here) and plain ``torch.nn``; Keras models from
``keras.applications`` with ``weights=None``. Each is saved the way its users ship it: an
ExportedProgram (``.pt2``) or a Keras file (``.keras``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portkit.specs import TensorSpec

IMAGE = (TensorSpec("image", (1, 3, 224, 224), "float32"),)
IMAGE_NHWC = (TensorSpec("image", (1, 224, 224, 3), "float32"),)


@dataclass(frozen=True)
class ZooModel:
    """One architecture of the zoo.

    Attributes:
        name: Short name used in results and file names.
        framework: ``torch`` or ``keras``.
        build: Returns the model (an ``nn.Module`` in eval mode, or a Keras model).
        inputs: The inputs it is exported with.
        config: What was built, in words (the docs tables show it).
        int8: Whether full-integer quantization applies (a classifier-like float model).
        kinds: What outputs hold where portkit's guess would be wrong, as ``--output-kind``
            takes them (``output_0=embedding``).
    """

    name: str
    framework: str
    build: Callable[[], Any]
    inputs: tuple[TensorSpec, ...]
    config: str
    int8: bool = False
    kinds: tuple[str, ...] = ()

    def save(self, folder: Path) -> Path:
        """Build the model, give its batch norms the statistics of real activations, and save
        it in ``folder`` (``.pt2`` or ``.keras``).

        Freshly initialised batch norms (mean 0, variance 1) make MobileNet's and EfficientNet's
        outputs vanish (logits ~1e-11, the same for every input), and a benchmark of them would
        compare constants. A trained network's batch norms hold its activations' statistics;
        here they are measured on a batch of seeded random inputs.
        """
        from portkit.specs import make_inputs

        calibration = [make_inputs(list(self.inputs), seed=100 + i) for i in range(8)]
        if self.framework == "keras":
            path = folder / f"{self.name}.keras"
            _keras_batchnorm_statistics(self.build(), calibration).save(path)
            return path
        import torch

        torch.manual_seed(0)
        module = _torch_batchnorm_statistics(self.build(), calibration).eval()
        args = tuple(torch.from_numpy(a) for a in make_inputs(list(self.inputs), seed=0).values())
        path = folder / f"{self.name}.pt2"
        with torch.no_grad():
            torch.export.save(torch.export.export(module, args), str(path))
        return path


def _torch_batchnorm_statistics(module: Any, samples: list[dict[str, Any]]) -> Any:
    """Batch norms' running statistics set to the mean and variance of their inputs over
    ``samples`` (one batch, train mode for the batch norms only), and their scales to 1
    (``transformers`` draws them from N(0, 0.02), which shrinks every block's output 50-fold)."""
    import numpy as np
    import torch

    norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return module
    module.eval()
    for m in norms:
        m.reset_parameters()  # scale 1, shift 0, running statistics reset
        m.momentum = None  # a cumulative average: one batch gives exactly its statistics
        m.train()
    batch = [torch.from_numpy(np.concatenate([s[k] for s in samples])) for k in samples[0]]
    with torch.no_grad():
        module(*batch)
    return module.eval()


def _keras_batchnorm_statistics(model: Any, samples: list[dict[str, Any]]) -> Any:
    """The same for a Keras model: one training-mode call with momentum 0."""
    import keras
    import numpy as np

    norms = [layer for layer in model._flatten_layers()  # noqa: SLF001 - every nested layer
             if isinstance(layer, keras.layers.BatchNormalization)]
    batch = [np.concatenate([s[k] for s in samples]) for k in samples[0]]
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    model(batch[0] if len(batch) == 1 else batch, training=True)
    for layer, momentum in zip(norms, momenta, strict=True):
        layer.momentum = momentum
    return model


def _image_model(model: Any) -> Any:
    """A ``transformers`` vision model as ``forward(image) -> logits``."""
    import torch

    class ImageModel(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, image: Any) -> Any:
            return self.model(image).logits

    return ImageModel()


def _text_model(model: Any) -> Any:
    """A ``transformers`` text encoder as ``forward(input_ids, attention_mask) -> hidden``."""
    import torch

    class TextModel(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.model(input_ids, attention_mask=attention_mask).last_hidden_state

    return TextModel()


def _resnet18() -> Any:
    from transformers import ResNetConfig, ResNetForImageClassification

    cfg = ResNetConfig(depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512], layer_type="basic",
                       num_labels=1000)
    return _image_model(ResNetForImageClassification(cfg))


def _mobilenet_v2() -> Any:
    from transformers import MobileNetV2Config, MobileNetV2ForImageClassification

    return _image_model(MobileNetV2ForImageClassification(MobileNetV2Config(num_labels=1000)))


def _efficientnet_b0() -> Any:
    from transformers import EfficientNetConfig, EfficientNetForImageClassification

    cfg = EfficientNetConfig(image_size=224, width_coefficient=1.0, depth_coefficient=1.0,
                             hidden_dim=1280, num_labels=1000)  # B0
    return _image_model(EfficientNetForImageClassification(cfg))


def _vit_tiny() -> Any:
    from transformers import ViTConfig, ViTForImageClassification

    cfg = ViTConfig(hidden_size=192, num_hidden_layers=12, num_attention_heads=3,
                    intermediate_size=768, image_size=224, patch_size=16, num_labels=1000,
                    attn_implementation="eager")
    return _image_model(ViTForImageClassification(cfg))


def _segformer_b0() -> Any:
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    cfg = SegformerConfig(num_labels=19, attn_implementation="eager")  # the b0 layout
    return _image_model(SegformerForSemanticSegmentation(cfg))


def _bert_tiny() -> Any:
    from transformers import BertConfig, BertModel

    cfg = BertConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=512, attn_implementation="eager")
    return _text_model(BertModel(cfg))


def _lstm() -> Any:
    import torch

    class LSTMClassifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(64, 128, num_layers=2, batch_first=True)
            self.head = torch.nn.Linear(128, 10)

        def forward(self, x: Any) -> Any:
            out, _ = self.lstm(x)
            return self.head(out[:, -1])

    return LSTMClassifier()


def _encoder4() -> Any:
    import torch

    class SentenceEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(8192, 256)
            self.layers = torch.nn.ModuleList(
                torch.nn.TransformerEncoderLayer(d_model=256, nhead=4, dim_feedforward=1024,
                                                 batch_first=True) for _ in range(4))

        def forward(self, input_ids: Any) -> Any:
            x = self.embed(input_ids)
            for layer in self.layers:
                x = layer(x)
            return x.mean(dim=1)

    return SentenceEncoder()


def _keras(name: str) -> Callable[[], Any]:
    def build() -> Any:
        import keras

        keras.utils.set_random_seed(0)
        # The input named as the zoo's specs name it (Keras would call it input_layer).
        image = keras.Input((224, 224, 3), name=IMAGE_NHWC[0].name)
        return getattr(keras.applications, name)(weights=None, input_tensor=image,
                                                 classifier_activation=None)  # logits

    return build


ZOO: tuple[ZooModel, ...] = (
    ZooModel("resnet18", "torch", _resnet18, IMAGE, "transformers ResNet, basic blocks [2,2,2,2]"),
    ZooModel("mobilenet_v2", "torch", _mobilenet_v2, IMAGE, "transformers MobileNetV2 1.0"),
    ZooModel("efficientnet_b0", "torch", _efficientnet_b0, IMAGE, "transformers EfficientNet-B0"),
    ZooModel("vit_tiny", "torch", _vit_tiny, IMAGE,
             "transformers ViT, 12 layers, hidden 192, patch 16"),
    ZooModel("segformer_b0", "torch", _segformer_b0, (TensorSpec("image", (1, 3, 256, 256)),),
             "transformers SegFormer-B0, 19 classes, 256x256"),
    ZooModel("bert_tiny", "torch", _bert_tiny,
             (TensorSpec("input_ids", (1, 128), "int64"),
              TensorSpec("attention_mask", (1, 128), "int64")),
             "transformers BERT, 2 layers, hidden 128, 128 tokens"),
    ZooModel("lstm", "torch", _lstm, (TensorSpec("x", (1, 32, 64), "float32"),),
             "torch.nn.LSTM 2x128 over 32 steps + linear"),
    ZooModel("encoder4", "torch", _encoder4, (TensorSpec("input_ids", (1, 128), "int64"),),
             "4 x torch.nn.TransformerEncoderLayer (d 256, 4 heads, ff 1024) over an 8k "
             "embedding, 128 tokens, mean-pooled",
             kinds=("output_0=embedding",)),  # a sentence embedding: top-1 means nothing
    ZooModel("keras_mobilenet_v2", "keras", _keras("MobileNetV2"), IMAGE_NHWC,
             "keras.applications.MobileNetV2", int8=True),
    ZooModel("keras_efficientnet_b0", "keras", _keras("EfficientNetB0"), IMAGE_NHWC,
             "keras.applications.EfficientNetB0", int8=True),
    ZooModel("keras_resnet50", "keras", _keras("ResNet50"), IMAGE_NHWC,
             "keras.applications.ResNet50", int8=True),
)


def by_name(names: list[str] | None = None) -> list[ZooModel]:
    """The zoo models called ``names`` (all when None or empty)."""
    if not names:
        return list(ZOO)
    known = {m.name: m for m in ZOO}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown zoo model(s): {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[n] for n in names]
