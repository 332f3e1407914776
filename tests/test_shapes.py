from __future__ import annotations

import numpy as np
import pytest

from portkit import options
from portkit.errors import UsageError
from portkit.shapes import (
    Shapes,
    at_given,
    parse_dim_flag,
    resized,
    resolve_inputs,
    size_sets,
    validation_sizes,
)
from portkit.specs import Dim, TensorSpec, parse_input_flag


def test_a_name_in_an_input_shape_leaves_that_dimension_free() -> None:
    spec = parse_input_flag("x:Nx3x32x32")
    assert spec.shape == (None, 3, 32, 32) and spec.dims[0] == Dim("N")
    [got] = resolve_inputs("m.pt", [TensorSpec("x", None, "")], [spec])
    assert got.shape == (1, 3, 32, 32)  # the example: the range's bottom
    assert got.dims == (Dim("N", 1, 64), None, None, None)  # default range 1..64
    assert "dynamic N 1..64" in got.describe()


def test_dim_gives_a_range_and_static_fixes_everything() -> None:
    stored = [TensorSpec("x", None, "")]
    given = [parse_input_flag("x:Nx3")]
    [ranged] = resolve_inputs("m.pt", stored, given, shapes=Shapes((Dim("N", 2, 5),)))
    assert ranged.shape == (2, 3) and ranged.dims[0] == Dim("N", 2, 5)
    [fixed] = resolve_inputs("m.pt", stored, given, shapes=Shapes(static=True))
    assert fixed.shape == (1, 3) and fixed.dims == ()
    with pytest.raises(UsageError, match=r"--dim M: no such dynamic dimension; the model's "
                                         r"are N"):
        resolve_inputs("m.pt", stored, given, shapes=Shapes((Dim("M", 1, 2),)))


def test_a_size_given_for_a_dynamic_dimension_is_its_example_and_must_fit_the_range() -> None:
    stored = [TensorSpec("ids", (2, 16), "int64", (Dim("batch", 1, 8), Dim("ids.1", 2, 128)))]
    [got] = resolve_inputs("m.pt2", stored, [parse_input_flag("ids:3x40")])
    assert got.shape == (3, 40) and got.dims == stored[0].dims
    with pytest.raises(UsageError, match=r"'ids' is 200 along ids.1, outside ids.1 2..128; "
                                         r"give an --input size inside it, or --dim "
                                         r"ids.1=2..200"):
        resolve_inputs("m.pt2", stored, [parse_input_flag("ids:1x200")])


def test_an_onnx_dim_param_and_a_keras_none_batch_stay_dynamic() -> None:
    stored = [TensorSpec("x", (None, 8, 3)), TensorSpec("y", (None, 8), "float32")]
    x, y = resolve_inputs("m.keras", stored, [])
    assert x.shape == (1, 8, 3) and x.dims[0] == Dim("batch", 1, 64)
    assert y.dims[0] == Dim("batch", 1, 64)  # the batch is shared


@pytest.mark.parametrize("bad", ["N", "N=0..3", "N=5..2", "=1..2", "N=1-2"])
def test_a_malformed_dim_flag_is_refused(bad: str) -> None:
    with pytest.raises(UsageError, match=r"--dim .*expected NAME=LO\.\.HI"):
        parse_dim_flag(bad)


def test_dim_twice_or_with_static_is_refused() -> None:
    with pytest.raises(UsageError, match="--dim N: given twice"):
        options.shapes(["N=1..2", "N=1..3"])
    with pytest.raises(UsageError, match="drop one"):
        options.shapes(["N=1..2"], static=True)
    assert options.shapes(["N=1..2"]) == Shapes((Dim("N", 1, 2),))


def test_validation_sizes_an_odd_size_then_the_top_when_cheap_else_the_bottom() -> None:
    cnn = [TensorSpec("x", (1, 3, 32, 32), "float32", (Dim("N", 1, 5), None, None, None))]
    assert validation_sizes(cnn) == [{"N": 3}, {"N": 5}]
    wide = [TensorSpec("x", (1, 3, 32, 32), "float32", (Dim("N", 1, 64), None, None, None))]
    assert validation_sizes(wide) == [{"N": 3}]  # 64x the example: not cheap; bottom = example
    text = [TensorSpec("ids", (1, 16), "int64", (Dim("batch", 1, 8), Dim("seq", 2, 128)))]
    assert validation_sizes(text) == [{"batch": 3, "seq": 33}, {"batch": 1, "seq": 2}]
    assert validation_sizes([TensorSpec("x", (1, 3))]) == []


def test_resized_samples_are_made_of_the_samples_own_values() -> None:
    spec = TensorSpec("ids", (1, 4), "int64", (Dim("batch", 1, 8), Dim("seq", 2, 16)))
    mask = TensorSpec("mask", (1, 4), "int64", (Dim("batch", 1, 8), Dim("seq", 2, 16)))
    samples = [{"ids": np.arange(4).reshape(1, 4) + 10 * i, "mask": np.full((1, 4), i),
                "sr": np.array(16000)} for i in range(2)]
    [first, second] = resized(samples, [spec, mask], {"batch": 3, "seq": 6})
    assert first["ids"].tolist() == [[0, 1, 2, 3, 10, 11], [10, 11, 12, 13, 0, 1],
                                     [0, 1, 2, 3, 10, 11]]
    assert second["ids"][0].tolist() == [10, 11, 12, 13, 0, 1]
    assert first["mask"].tolist() == [[0, 0, 0, 0, 1, 1], [1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1]]
    assert first["sr"] == 16000  # a constant is kept as it is
    [short] = resized(samples[:1], [spec], {"seq": 2})
    assert short["ids"].tolist() == [[0, 1]]


def test_bench_shapes_group_by_position_and_shared_dims_follow() -> None:
    given = [parse_input_flag("ids:1x16"), parse_input_flag("ids:1x64")]
    sets = size_sets(given)
    assert [[s.shape for s in size] for size in sets] == [[(1, 16)], [(1, 64)]]
    with pytest.raises(UsageError, match=r"--shape: each input named needs as many values"):
        size_sets([parse_input_flag("ids:1x16"), parse_input_flag("ids:1x64"),
                   parse_input_flag("mask:1x16")])
    dims = (Dim("batch", 1, 8), Dim("seq", 2, 128))
    specs = [TensorSpec("ids", (1, 64), "int64", dims), TensorSpec("mask", (1, 16), "int64", dims)]
    assert [s.shape for s in at_given(specs, sets[1])] == [(1, 64), (1, 64)]


def test_when_the_odd_size_is_the_top_the_bottom_is_validated_too() -> None:
    seq = [TensorSpec("ids", (1, 64), "int64", (None, Dim("seq", 2, 128)))]
    assert validation_sizes(seq) == [{"seq": 128}, {"seq": 2}]


def test_a_name_for_a_dimension_the_model_fixes_is_refused() -> None:
    stored = [TensorSpec("x", (1, 3, 32, 32), "float32")]
    with pytest.raises(UsageError, match=r"m\.pt2: --input x:Nx3x32x32: the model takes "
                                         r"x: 1x3x32x32 float32 .*export the model with the "
                                         r"dimension you need left dynamic"):
        resolve_inputs("m.pt2", stored, [parse_input_flag("x:Nx3x32x32")])


def test_a_file_for_a_free_batch_holds_samples_of_batch_1_on_its_first_axis() -> None:
    # as calibration sets are saved: (140, 32, 32, 3) is 140 images, not one batch of 140
    stored = [TensorSpec("image", (None, 32, 32, 3), "float32")]
    arrays = {"image": np.zeros((140, 32, 32, 3), np.float32)}
    [got] = resolve_inputs("m.keras", stored, [], arrays, "--calibration")
    assert got.shape == (1, 32, 32, 3) and got.dims[0] == Dim("batch", 1, 64)
    [batched] = resolve_inputs("m.keras", stored, [], {"image": np.zeros((5, 4, 32, 32, 3))})
    assert batched.shape == (4, 32, 32, 3)  # a batch of several: one rank higher
    fixed = [TensorSpec("image", (2, 32, 32, 3), "float32")]
    assert resolve_inputs("m.keras", fixed, [], arrays)[0].shape == (2, 32, 32, 3)


# Silero-style inputs: a window with no dimension named, an LSTM state [2, ?, 128].
_WINDOW = TensorSpec("input", (None, None))
_STATE = TensorSpec("state", (2, None, 128))


def test_an_unnamed_dimension_takes_the_size_given_within_its_default_range() -> None:
    # It was given an invented 1..64 that refused 512: "512 along input.1, outside 1..64".
    [window] = resolve_inputs("vad.onnx", [_WINDOW], [parse_input_flag("input:1x512")])
    assert window.shape == (1, 512)
    assert window.dims == (Dim("batch", 1, 64), Dim("input.1", 1, 512))


def test_static_and_a_one_size_dim_fix_an_unnamed_dimension() -> None:
    given = [parse_input_flag("input:1x512")]
    [window] = resolve_inputs("vad.onnx", [_WINDOW], given, shapes=Shapes(static=True))
    assert window.shape == (1, 512) and window.dims == ()
    one = options.shapes(["input.1=512..512"])
    [window] = resolve_inputs("vad.onnx", [_WINDOW], given, shapes=one)
    assert window.shape == (1, 512) and window.dims == (Dim("batch", 1, 64), None)
    assert one.asked() == set()  # K..K asks for nothing to stay dynamic
    [window] = resolve_inputs("vad.onnx", [_WINDOW], [], shapes=one)  # K..K is the size too
    assert window.shape == (1, 512)


def test_an_rnn_state_takes_the_batch_the_other_inputs_fix() -> None:
    window, state = resolve_inputs("vad.onnx", [_WINDOW, _STATE],
                                   [parse_input_flag("input:3x512")])
    assert state.shape == (2, 3, 128) and state.dims[1] is window.dims[0]  # one batch
    # Given at another size, the user's state stays a dimension of its own.
    _window, state = resolve_inputs("vad.onnx", [_WINDOW, _STATE],
                                    [parse_input_flag("input:1x512"),
                                     parse_input_flag("state:2x4x128")])
    assert state.shape == (2, 4, 128) and state.dims[1].name == "state.1"


def test_a_missing_shape_is_suggested_with_the_batch_the_other_inputs_fix() -> None:
    stored = [TensorSpec("x", (None, 8)), TensorSpec("y", (None, None))]
    with pytest.raises(UsageError, match=r"pass it, e\.g\. --input y:4x128, or --inputs"):
        resolve_inputs("m.onnx", stored, [parse_input_flag("x:4x8")])


def test_fixed_dimensions_are_static_and_asked_ones_are_the_users() -> None:
    stored = [TensorSpec("x", (None, 3, None), dims=(Dim("batch"), None, Dim("seq")))]
    [x] = resolve_inputs("m.onnx", stored, [parse_input_flag("x:2x3x7")],
                         shapes=Shapes(fixed=("batch",)))
    assert x.shape == (2, 3, 7) and x.dims == (None, None, Dim("seq"))
    assert Shapes((Dim("seq", 2, 9),)).asked([parse_input_flag("x:Nx3x7")]) == {"seq", "N"}
    assert Shapes(required=("batch",)).asked() == {"batch"}


def test_only_an_input_named_as_a_state_takes_the_batch() -> None:
    # ROI boxes [1, ?, 4] beside an image are no RNN state: their count is asked for.
    stored = [TensorSpec("image", (None, 3, 8, 8)), TensorSpec("boxes", (1, None, 4))]
    with pytest.raises(UsageError, match=r"input 'boxes' is not stored.*--input boxes:1x128x4"):
        resolve_inputs("det.onnx", stored, [parse_input_flag("image:2x3x8x8")])


def test_a_suggestion_takes_the_batch_not_a_sequence_length() -> None:
    stored = [TensorSpec("x", (1, None)), TensorSpec("y", (None, None))]
    with pytest.raises(UsageError, match=r"--input y:1x128,"):
        resolve_inputs("m.onnx", stored, [parse_input_flag("x:1x300")])
