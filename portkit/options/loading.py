"""How a model file is opened: the SavedModel signature and whether it may run code."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LoadOptions:
    """How a source model is opened.

    Attributes:
        signature: The SavedModel signature to use (None: ``serving_default``, else the only one).
        trust_model: Allow Keras Lambda layers and custom objects (they run Python code on load).
        threads: CPU threads the runtime may use (None: its default; TFLite: one per core).
    """

    signature: str | None = None
    trust_model: bool = False
    threads: int | None = None


