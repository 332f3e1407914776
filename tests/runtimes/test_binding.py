from __future__ import annotations

import numpy as np
import pytest

from portkit.errors import PortkitError
from portkit.runtimes.binding import (
    Binding,
    bind_inputs,
    candidate_perms,
    clean_name,
    pair_by_name,
)
from portkit.specs import TensorSpec


def test_identity_first_then_channels_last() -> None:
    assert candidate_perms((1, 3, 8, 8), (1, 3, 8, 8))[0] is None
    assert candidate_perms((1, 3, 8, 8), (1, 8, 8, 3))[0] == (0, 2, 3, 1)
    assert candidate_perms((1, 3, 4, 8), (1, 4, 8, 3)) == [(0, 2, 3, 1)]


def test_prefer_channels_last_when_ambiguous() -> None:
    assert candidate_perms((1, 4, 4, 4), (1, 4, 4, 4), prefer_channels_last=True)[0] == (0, 2, 3, 1)


def test_no_permutation_fits() -> None:
    assert candidate_perms((1, 3, 8, 8), (1, 3, 4, 4)) == []


def test_tflite_names_are_cleaned() -> None:
    assert clean_name("serving_default_image:0") == "image"
    assert pair_by_name(["a", "b"], ["serving_default_b:0", "serving_default_a:0"]) == [
        ("a", "serving_default_a:0"), ("b", "serving_default_b:0")]


def test_pairs_in_order_when_names_differ() -> None:
    assert pair_by_name(["x"], ["args_0"]) == [("x", "args_0")]


def test_count_mismatch_is_an_error() -> None:
    with pytest.raises(PortkitError, match="1 tensors"):
        pair_by_name(["x"], ["a", "b"])


def test_binding_round_trip_and_note() -> None:
    arr = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
    b = Binding("x", "x", (0, 2, 3, 1))
    assert b.to_artifact(arr).shape == (1, 3, 4, 2)
    assert np.array_equal(b.to_source(b.to_artifact(arr)), arr)
    assert b.layout_note == "NCHW->NHWC"
    assert Binding("x", "x").layout_note is None


def test_bind_inputs_maps_nhwc_artifact() -> None:
    src = [TensorSpec("image", (1, 3, 16, 16)), TensorSpec("vec", (1, 8))]
    art = [TensorSpec("serving_default_vec:0", (1, 8)), TensorSpec("serving_default_image:0", (1, 16, 16, 3))]
    got = bind_inputs(src, art)
    assert got == [Binding("image", "serving_default_image:0", (0, 2, 3, 1)),
                   Binding("vec", "serving_default_vec:0", None)]


def test_bind_inputs_shape_that_fits_nothing() -> None:
    with pytest.raises(PortkitError, match="fits no axis order"):
        bind_inputs([TensorSpec("x", (1, 3))], [TensorSpec("x", (1, 4))])
