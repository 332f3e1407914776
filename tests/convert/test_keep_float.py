"""``--keep-float auto``'s search (``portkit.convert.keep_float``), for both quantizers: on names
shaped like a transformer's TFLite ops (by scope before single ops, within a trial budget, never
returning a set that did not pass) and on a flat list of modules (the fewest, in bounded
trials). Pure logic: ``passes`` is a rule over the names kept."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from portkit.convert.keep_float import MAX_UNITS, fewest_float, module_path

Judged = list[tuple[str, ...]]


def recorded(must: set[str]) -> tuple[Callable[[tuple[str, ...]], bool], Judged]:
    """A policy met when every name of ``must`` is kept float, and the sets it was asked
    about, in order."""
    judged: Judged = []

    def passes(keep: tuple[str, ...]) -> bool:
        judged.append(keep)
        return must <= set(keep)

    return passes, judged


def encoder_ops(layers: int = 6) -> list[str]:
    """~50 op names a layer, as litert-torch names a 6-layer encoder's TFLite tensors."""
    names = [f"Encoder/Embedding_embed;{i}" for i in range(3)]
    for layer in range(layers):
        block = f"Encoder/Block_{layer}"
        for part, count in (("Linear_q", 1), ("", 12), ("Linear_o", 2), ("LayerNorm_norm1", 12),
                            ("Linear_up", 1), ("Linear_down", 1), ("LayerNorm_norm2", 12)):
            names += [f"{block}/{part};{i}" if part else f"{block};{i}" for i in range(count)]
    return [*names, "Encoder;out"]


def test_a_culprit_pair_in_one_block_costs_tens_of_trials_not_hundreds() -> None:
    names = encoder_ops()
    culprits = {"Encoder/Block_3/Linear_up;0", "Encoder/Block_3/Linear_down;0"}
    passes, judged = recorded(culprits)
    kept, note = fewest_float(names, passes)
    assert set(kept) == culprits and note == ""
    assert len(names) == 250 and len(judged) <= 30, len(judged)  # flat: ~170 for this case
    assert len(set(judged)) == len(judged)  # no set judged twice


def test_the_budget_stops_the_search_on_a_set_that_passed() -> None:
    names = encoder_ops()
    culprits = {"Encoder/Block_3/Linear_down;0"}
    passes, judged = recorded(culprits)
    kept, note = fewest_float(names, passes, budget=5)
    assert len(judged) == 5 and culprits <= set(kept) and passes(kept)
    assert len(kept) < len(names)  # the block level already narrowed it
    assert note.startswith("stopped after 5 trials")


def test_a_flat_list_longer_than_a_level_is_cut_into_runs() -> None:
    names = [f"op{i}" for i in range(200)]
    culprit = {"op137"}
    passes, judged = recorded(culprit)
    kept, _ = fewest_float(names, passes)
    assert set(kept) == culprit and len(judged) <= 30 and len(names) > MAX_UNITS


def test_modules_are_scoped_by_their_dotted_names() -> None:
    names = [f"layers.{i}.{part}" for i in range(8) for part in ("q", "k", "v", "o", "up", "down")]
    culprits = {"layers.5.up", "layers.5.down"}
    kept, note = fewest_float(names, lambda keep: culprits <= set(keep), "modules", module_path)
    assert kept == ("layers.5.up", "layers.5.down") and note == ""


@pytest.mark.parametrize(("needed", "count"), [
    ((), 12), ((0,), 12), ((11,), 12), ((3, 7), 12), ((0, 5, 11), 12), ((2,), 3)])
def test_fewest_float_finds_the_fewest_in_bounded_trials(needed: tuple[int, ...],
                                                         count: int) -> None:
    names = [f"m{i}" for i in range(count)]
    must = {names[i] for i in needed}
    passes, judged = recorded(must)
    kept, note = fewest_float(names, passes)
    assert set(kept) == must and note == ""
    prefix = max(needed, default=-1) + 1  # the shortest passing prefix's length
    assert len(set(judged)) <= 2 + math.ceil(math.log2(count)) + prefix, judged


def test_fewest_float_says_so_when_nothing_passes() -> None:
    kept, note = fewest_float(["a", "b"], lambda keep: False, "modules")
    assert kept == () and note == ("even with all 2 modules float the model misses the "
                                   "policy; nothing kept float")
