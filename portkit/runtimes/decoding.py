"""Language models run as apps run them: a prefill over the prompt, then one token at a time,
each step fed the key/value cache the previous one left (``--generate N``).

A ``Decoder`` is one loaded model that keeps **its own** cache: the source (transformers,
eager) in ``runtimes/torch.py``, an ONNX graph with ``past_key_values``/``present`` in
``runtimes/onnxruntime.py``, a TFLite file's ``prefill_<len>``/``decode`` signatures in
``runtimes/tflite.py``, an ExecuTorch program's static cache in ``runtimes/executorch.py``.
``generate`` runs greedy steps on any of them and records every step's logits, so the check
(``validators/generation.py``) compares step by step what each side computed from its own past.
"""

from __future__ import annotations

import abc
import importlib
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from portkit.errors import UsageError
from portkit.formats import Format
from portkit.options.generation import Export
from portkit.runtimes.worker import task

# The runtime module whose ``load_decoder(path, export) -> Decoder`` loads each format (imported
# when asked, as ``registry`` imports the runtimes).
_LOADERS = {
    Format.HUGGINGFACE: "portkit.runtimes.torch",
    Format.ONNX: "portkit.runtimes.onnxruntime",
    Format.TFLITE: "portkit.runtimes.tflite",
    Format.EXECUTORCH: "portkit.runtimes.executorch",
}


class Decoder(abc.ABC):
    """A causal language model loaded for generation; it holds its own key/value cache.

    Attributes:
        vocab: Logits per position.
        max_seq: Positions its cache holds (prompt and generated tokens), None if unbounded.
    """

    def __init__(self, vocab: int, max_seq: int | None) -> None:
        self.vocab = vocab
        self.max_seq = max_seq

    def prefill(self, ids: np.ndarray) -> np.ndarray:
        """Start over with ``ids`` (int64, shape ``[T]``) as the prompt.

        Returns:
            The logits at the prompt's last position (float32, ``[vocab]``).

        Raises:
            UsageError: The prompt is empty or does not fit ``max_seq``.
        """
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if not ids.size or (self.max_seq is not None and ids.size >= self.max_seq):
            raise UsageError(f"a prompt of {ids.size} tokens: it must hold at least one and fewer "
                             f"than this model's {self.max_seq} cache positions (--max-seq)")
        self._length = int(ids.size)
        return np.asarray(self._prefill(ids), dtype=np.float32).reshape(-1)

    def decode(self, token: int) -> np.ndarray:
        """Feed ``token`` at the next position; the logits there (float32, ``[vocab]``)."""
        if self.max_seq is not None and self._length >= self.max_seq:
            raise UsageError(f"the cache is full at {self.max_seq} positions: generate fewer "
                             "tokens or convert with a larger --max-seq")
        self._length += 1
        return np.asarray(self._decode(int(token)), dtype=np.float32).reshape(-1)

    @abc.abstractmethod
    def _prefill(self, ids: np.ndarray) -> np.ndarray:
        """Reset the cache and run the prompt; the last position's logits."""

    @abc.abstractmethod
    def _decode(self, token: int) -> np.ndarray:
        """Run one token at position ``self._length - 1``; its logits."""

    def cache(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each layer's (keys, values) for the positions used so far, as
        ``[kv_heads, positions, head_dim]`` float32; empty where the runtime hides the cache
        (an ExecuTorch program's mutable buffers)."""
        return []

    _length = 0


@dataclass(frozen=True)
class Generated:
    """One side's greedy generation.

    Attributes:
        prompt: The prompt's ids.
        tokens: The token chosen at each step (step 0: after the prefill).
        logits: Each step's logits, ``[steps, vocab]`` float32.
        cache: Each layer's (keys, values) at the end (``Decoder.cache``), possibly empty.
        prefill_seconds: The prefill's wall time.
        decode_seconds: Each decode step's wall time.
        fed: The tokens fed after each step where they were another side's (teacher forcing:
            ``generate``'s ``forced``), else empty: each was this side's own choice.
    """

    prompt: tuple[int, ...]
    tokens: tuple[int, ...]
    logits: np.ndarray
    cache: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    prefill_seconds: float = 0.0
    decode_seconds: tuple[float, ...] = ()
    fed: tuple[int, ...] = ()


def generate(decoder: Decoder, prompt: np.ndarray, steps: int,
             forced: Sequence[int] = ()) -> Generated:
    """``steps`` greedy tokens after ``prompt``: prefill, then each chosen token fed back; or,
    with ``forced`` (another side's tokens), ``forced[i]`` fed after step ``i`` whatever this
    side chose (teacher forcing: each step then sees the same text on both sides), for as many
    steps as ``forced`` has tokens to feed."""
    fed = tuple(int(t) for t in forced)
    if fed:
        steps = min(steps, len(fed) + 1)
    started = time.perf_counter()
    logits = [decoder.prefill(prompt)]
    prefill_seconds = time.perf_counter() - started
    tokens = [int(np.argmax(logits[0]))]
    times = []
    for i in range(steps - 1):
        started = time.perf_counter()
        logits.append(decoder.decode(fed[i] if fed else tokens[-1]))
        times.append(time.perf_counter() - started)
        tokens.append(int(np.argmax(logits[-1])))
    return Generated(tuple(int(t) for t in np.asarray(prompt).reshape(-1)), tuple(tokens),
                     np.stack(logits), decoder.cache(), prefill_seconds, tuple(times),
                     fed[:steps - 1])


def load_decoder(path: Path, fmt: Format, export: Export = Export()) -> Decoder:
    """The decoder for ``path`` (a ``fmt`` model).

    Raises:
        UsageError: ``fmt`` has no decoder, or the model is not a language model with a cache.
    """
    if fmt not in _LOADERS:
        raise UsageError(f"{path}: a {fmt.value} model can't generate; language models run as "
                         f"{', '.join(f.value for f in _LOADERS)}")
    decoder: Decoder = importlib.import_module(_LOADERS[fmt]).load_decoder(Path(path), export)
    return decoder


@task
def generate_task(path: str, fmt: Format, prompt: list[int], steps: int,
                  export: Export = Export(), forced: Sequence[int] = ()) -> Generated:
    """``generate`` in a worker: ``path`` loaded as a decoder, ``steps`` greedy tokens (fed
    ``forced``'s where given)."""
    return generate(load_decoder(Path(path), fmt, export), np.asarray(prompt, np.int64), steps,
                    forced)


@task
def time_generation(path: str, fmt: Format, prompts: list[list[int]], steps: int,
                    export: Export = Export()) -> tuple[list[Generated], float]:
    """One turn of ``portkit bench --generate``: each prompt's generation of ``steps`` tokens,
    the decoder loaded once per worker (kept across turns); and the worker's peak RSS, MB."""
    key = (path, fmt, export)
    if key not in _LOADED:
        _LOADED.clear()  # one model per worker
        _LOADED[key] = load_decoder(Path(path), fmt, export)
    decoder = _LOADED[key]
    runs = [generate(decoder, np.asarray(p, np.int64), steps) for p in prompts]
    return runs, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


_LOADED: dict[tuple[str, Format, Export], Decoder] = {}
