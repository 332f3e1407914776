"""``--keep-float auto``'s search (``portkit.convert.keep_float``) on names shaped like a
transformer's TFLite ops: by scope before single ops, within a trial budget, never returning a
set that did not pass. Pure logic: ``passes`` is a rule over the names kept."""

from __future__ import annotations

from portkit.convert.keep_float import MAX_UNITS, fewest_float, module_path


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
    judged: list[tuple[str, ...]] = []

    def passes(keep: tuple[str, ...]) -> bool:
        judged.append(keep)
        return culprits <= set(keep)

    kept, note = fewest_float(names, passes)
    assert set(kept) == culprits and note == ""
    assert len(names) == 250 and len(judged) <= 30, len(judged)  # flat: ~170 for this case
    assert len(set(judged)) == len(judged)  # no set judged twice


def test_the_budget_stops_the_search_on_a_set_that_passed() -> None:
    names = encoder_ops()
    culprits = {"Encoder/Block_3/Linear_down;0"}
    judged: list[tuple[str, ...]] = []

    def passes(keep: tuple[str, ...]) -> bool:
        judged.append(keep)
        return culprits <= set(keep)

    kept, note = fewest_float(names, passes, budget=5)
    assert len(judged) == 5 and culprits <= set(kept) and passes(kept)
    assert len(kept) < len(names)  # the block level already narrowed it
    assert note.startswith("stopped after 5 trials")


def test_a_flat_list_longer_than_a_level_is_cut_into_runs() -> None:
    names = [f"op{i}" for i in range(200)]
    culprit = {"op137"}
    judged: list[tuple[str, ...]] = []

    def passes(keep: tuple[str, ...]) -> bool:
        judged.append(keep)
        return culprit <= set(keep)

    kept, _ = fewest_float(names, passes)
    assert set(kept) == culprit and len(judged) <= 30 and len(names) > MAX_UNITS


def test_modules_are_scoped_by_their_dotted_names() -> None:
    names = [f"layers.{i}.{part}" for i in range(8) for part in ("q", "k", "v", "o", "up", "down")]
    culprits = {"layers.5.up", "layers.5.down"}
    kept, note = fewest_float(names, lambda keep: culprits <= set(keep), "modules", module_path)
    assert kept == ("layers.5.up", "layers.5.down") and note == ""
