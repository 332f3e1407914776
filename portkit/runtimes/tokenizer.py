"""A language model directory's tokenizer (``transformers.AutoTokenizer``), in a worker: a
``--prompt`` into ids, and ids back into text for the generation report."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from portkit.errors import UsageError
from portkit.runtimes.context import RunContext
from portkit.runtimes.worker import task

# Groups of token ids -> one text per group.
Words = Callable[[list[list[int]]], list[str]]


@functools.cache
def _load(path: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except Exception as e:  # noqa: BLE001 - any loader failure is the directory's
        raise UsageError(f"{path}: its tokenizer does not load ({type(e).__name__}: {e}); pass "
                         "the prompt's ids with --inputs ids.npz (an input_ids array)") from None


@task
def encode(path: str, text: str) -> list[int]:
    """``text`` as the tokenizer's ids (with the special tokens it adds, e.g. ``<s>``)."""
    ids = _load(path)(text)["input_ids"]
    if not ids:
        raise UsageError(f"--prompt {text!r}: {path}'s tokenizer makes no tokens of it")
    return [int(i) for i in ids]


@task
def decode(path: str, groups: list[list[int]]) -> list[str]:
    """Each group of ids as text."""
    tok = _load(path)
    return [tok.decode(ids) for ids in groups]


def words(path: Path, ctx: RunContext) -> Words:
    """``decode`` for ``path``'s tokenizer, run in ``ctx``'s tokenizer worker."""
    def run(groups: list[list[int]]) -> list[str]:
        texts: list[str] = ctx.pool.call("tokenizer", decode, timeout=ctx.timeout,
                                         what=str(path), path=str(path), groups=groups)
        return texts

    return run
