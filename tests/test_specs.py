from __future__ import annotations

import re

import numpy as np
import pytest

from portkit.errors import UsageError
from portkit.shapes import resolve_inputs
from portkit.specs import (
    TensorSpec,
    calibrated_part,
    load_calibration,
    load_inputs_file,
    make_inputs,
    match_arrays,
    matched_by_position,
    parse_input_flag,
    read_arrays,
)


def test_parse_input_flag_shape_and_dtype() -> None:
    assert parse_input_flag("x:1x3x64x64") == TensorSpec("x", (1, 3, 64, 64), "")
    assert parse_input_flag("ids:1x128:int64") == TensorSpec("ids", (1, 128), "int64")
    assert parse_input_flag("s:scalar") == TensorSpec("s", (), "")


@pytest.mark.parametrize("bad", ["x", "x:1x", "x:1x3:complex", ":1x3", "x:1.5x3"])
def test_parse_input_flag_rejects_malformed(bad: str) -> None:
    with pytest.raises(UsageError, match="--input"):
        parse_input_flag(bad)


def test_resolve_fills_missing_shape_and_keeps_stored_dtype() -> None:
    stored = [TensorSpec("x", None, ""), TensorSpec("ids", (1, 4), "int64")]
    got = resolve_inputs("m.pt", stored, [parse_input_flag("x:1x3"), parse_input_flag("ids:1x4")])
    assert got == [TensorSpec("x", (1, 3), "float32"), TensorSpec("ids", (1, 4), "int64")]


def test_resolve_missing_shape_names_the_flag() -> None:
    with pytest.raises(UsageError, match=r"m\.pt: .*'x'.*pass it, e\.g\. --input x:"):
        resolve_inputs("m.pt", [TensorSpec("x", None, "")], [])


def test_resolve_unknown_name_lists_the_model_inputs() -> None:
    stored = [TensorSpec("a", None, ""), TensorSpec("b", None, "")]
    with pytest.raises(UsageError, match="model's inputs are a, b"):
        resolve_inputs("m.pt", stored, [parse_input_flag("zzz:1x2")])


def test_resolve_refuses_a_renamed_flag_rather_than_guess_by_order() -> None:
    with pytest.raises(UsageError, match=r"--input names x, but the model's inputs are args_0; "
                                         r"name them so, e\.g\. --input args_0:2x2"):
        resolve_inputs("m", [TensorSpec("args_0", None, "")], [parse_input_flag("x:2x2")])


def test_make_inputs_is_seeded() -> None:
    specs = [TensorSpec("x", (2, 3)), TensorSpec("i", (4,), "int64"), TensorSpec("b", (2,), "bool")]
    a, b = make_inputs(specs, 7), make_inputs(specs, 7)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert a["x"].dtype == np.float32 and a["i"].dtype == np.int64 and a["b"].dtype == bool
    assert not np.array_equal(a["x"], make_inputs(specs, 8)["x"])


def test_inputs_file_refuses_object_arrays(tmp_path) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(UsageError, match="cannot read it"):
        load_inputs_file(str(path), [TensorSpec("x", (1,))])


def test_inputs_file_by_name_and_unnamed_arrays_by_order(tmp_path) -> None:
    path = tmp_path / "in.npz"
    np.savez(path, np.ones((1, 2), np.float32))  # saved unnamed: arr_0
    [got] = load_inputs_file(str(path), [TensorSpec("x", (1, 2))])
    assert list(got) == ["x"] and got["x"].shape == (1, 2)
    np.savez(path, anything=np.ones((1, 2), np.float32), more=np.ones((1, 2), np.float32))
    with pytest.raises(UsageError, match=r"holds anything, more; the model's inputs are x"):
        load_inputs_file(str(path), [TensorSpec("x", (1, 2))])


def test_an_array_of_another_name_feeds_the_only_input_and_the_note_says_so(tmp_path) -> None:
    # A Keras 3 input is called input_layer_1 by its layer and keras_tensor_182 by its tensor
    # (what model.inputs[0].name gives, renumbered on every load): either name feeds it.
    path = tmp_path / "in.npz"
    np.savez(path, keras_tensor_182=np.ones((4, 2), np.float32))
    specs = [TensorSpec("input_layer_1", (1, 2))]
    assert [s["input_layer_1"].shape for s in load_inputs_file(str(path), specs)] == [(1, 2)] * 4
    arrays = read_arrays(str(path))
    assert matched_by_position(specs, arrays, "--inputs") == [
        "input 'input_layer_1' read from the array 'keras_tensor_182' of --inputs, by position "
        "(no array is named 'input_layer_1')"]


def test_arrays_of_other_names_feed_inputs_in_order_only_where_ranks_fit() -> None:
    specs = [TensorSpec("ids", (1, 8), "int64"), TensorSpec("mask", (1, 8), "int64"),
             TensorSpec("image", (1, 3, 4, 4))]
    arrays = {"a": np.zeros((1, 8)), "b": np.zeros((1, 8)), "c": np.zeros((1, 3, 4, 4))}
    assert match_arrays(specs, arrays) == {"ids": "a", "mask": "b", "image": "c"}
    arrays = {"a": np.zeros((1, 3, 4, 4)), "b": np.zeros((1, 8)), "c": np.zeros((1, 8))}
    assert match_arrays(specs, arrays) == {}  # a 4-D array can't be token ids: no guess
    with pytest.raises(UsageError, match=r"holds a, b, c, but the model's inputs are ids, mask"):
        resolve_inputs("m.onnx", [TensorSpec("ids", (1, 8), "int64"),
                                  TensorSpec("mask", (1, 8), "int64")], [],
                       {"a": np.zeros((1, 8)), "b": np.zeros((1, 8)), "c": np.zeros((1, 8))})


def test_a_file_that_names_some_inputs_is_matched_by_name_only() -> None:
    # attention_mask is not token_type_ids: an array beside named ones is another tensor.
    specs = [TensorSpec("input_ids", (1, 8), "int64"), TensorSpec("token_type_ids", (1, 8),
                                                                  "int64")]
    arrays = {"input_ids": np.zeros((1, 8)), "attention_mask": np.zeros((1, 8))}
    assert match_arrays(specs, arrays) == {"input_ids": "input_ids"}
    with pytest.raises(UsageError, match=r"holds attention_mask, but the model's inputs are "
                                         r"input_ids, token_type_ids"):
        resolve_inputs("bert.onnx", specs, [], arrays)


@pytest.mark.parametrize("shape", [(5, 1, 3, 4), (5, 3, 4)])
def test_inputs_file_holds_samples_on_a_leading_axis(tmp_path, shape) -> None:
    path = tmp_path / "calib.npz"
    data = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    np.savez(path, x=data)
    samples = load_inputs_file(str(path), [TensorSpec("x", (1, 3, 4))])
    assert len(samples) == 5 and all(s["x"].shape == (1, 3, 4) for s in samples)
    assert np.array_equal(samples[2]["x"].ravel(), data[2].ravel())


def test_inputs_folder_of_npy_files_is_one_sample_each(tmp_path) -> None:
    for i in range(3):
        np.save(tmp_path / f"{i}.npy", np.full((1, 2), i, np.float32))
    samples = load_inputs_file(str(tmp_path), [TensorSpec("x", (1, 2))], what="--calibration")
    assert [float(s["x"][0, 0]) for s in samples] == [0.0, 1.0, 2.0]


def test_inputs_file_with_a_wrong_shape_names_flag_input_and_shapes(tmp_path) -> None:
    path = tmp_path / "calib.npz"
    np.savez(path, x=np.zeros((4, 7), np.float32))
    with pytest.raises(UsageError, match=r"--calibration .*'x' has shape \(4, 7\); expected \(1, 3\)"):
        load_inputs_file(str(path), [TensorSpec("x", (1, 3))], what="--calibration")


def test_a_dynamic_batch_dimension_defaults_to_one() -> None:
    [spec] = resolve_inputs("m.keras", [TensorSpec("x", (None, 8, 3))], [])
    assert spec.shape == (1, 8, 3)
    with pytest.raises(UsageError, match="not stored"):
        resolve_inputs("m.keras", [TensorSpec("x", (None, None, 3))], [])


def test_an_inputs_file_gives_the_shapes_and_dtypes_the_model_does_not_store() -> None:
    stored = [TensorSpec("ids", (None, None), "int64"), TensorSpec("audio", None, ""),
              TensorSpec("mask", (1, 8), "int64")]
    arrays = {"ids": np.zeros((4, 1, 8), np.int64),  # four samples of a 1x8 input
              "audio": np.zeros((1, 16000), np.float32), "mask": np.ones((4, 1, 8), np.int64)}
    specs = resolve_inputs("m.pt", stored, [], arrays)
    assert [(s.name, s.shape, s.dtype) for s in specs] == [
        ("ids", (1, 8), "int64"), ("audio", (1, 16000), "float32"), ("mask", (1, 8), "int64")]
    assert [d.name for d in specs[0].dynamic] == ["batch", "ids.1"]  # ONNX's free dims stay so
    # --input wins over the file
    given = [TensorSpec("audio", (1, 8000), "float32")]
    assert resolve_inputs("m.pt", stored, given, arrays)[1].shape == (1, 8000)
    # a folder's stacked .npy files hold samples on the first axis
    [one] = resolve_inputs("m.pt", [TensorSpec("x", None, "")],
                           [], {"": np.zeros((3, 1, 16000), np.float32)})
    assert one == TensorSpec("x", (1, 16000), "float32")


def test_a_missing_shape_is_suggested_from_the_input_s_rank_and_dtype() -> None:
    with pytest.raises(UsageError, match=r"--input ids:1x128:int64 --input x:1x3x224x224, or "
                                         r"--inputs sample.npz"):
        resolve_inputs("m.onnx", [TensorSpec("ids", (None, None), "int64"),
                                  TensorSpec("x", (None, 3, None, None))], [])
    with pytest.raises(UsageError, match=r"--input wave:SHAPE \(e.g. 1x3x224x224, 1x16000, or "
                                         r"1x128:int64\)"):
        resolve_inputs("m.pt", [TensorSpec("wave", None, "")], [])


def test_an_empty_inputs_folder_is_a_usage_error(tmp_path) -> None:
    with pytest.raises(UsageError, match=r"--inputs .*: the folder holds no \.npy files"):
        load_inputs_file(str(tmp_path), [TensorSpec("x", (1, 2))])


@pytest.mark.parametrize("array, dtype", [
    (np.array([1, 2, -3], np.int64), "float32"),  # whole numbers exactly representable
    (np.array([2**24], np.int64), "float32"),
    (np.array([7, 9], np.int64), "int32"),
    (np.array([0, 1], np.int64), "bool"),
    (np.array([True, False]), "float32"),
    (np.array([0.1, -3e38, np.nan]), "float32"),  # float64 rounds; finite stays finite
    (np.array([0.5], np.float16), "float32"),
])
def test_a_cast_that_changes_no_value_is_made(array, dtype) -> None:
    from portkit.specs import cast_to

    out = cast_to(array, dtype, "--inputs in.npz", "x")
    assert out.dtype == np.dtype(dtype)
    assert np.array_equal(out.astype(np.float64), array.astype(np.float64), equal_nan=True) or \
        array.dtype.kind == "f"


@pytest.mark.parametrize("array, dtype, why", [
    (np.array([2**24 + 1], np.int64), "float32", "1 of its values are not exactly float32"),
    (np.array([2**40], np.int64), "int32", "not exactly int32"),
    (np.array([2], np.int64), "bool", "not exactly bool"),
    (np.array([1e39]), "float32", "1 of its finite values overflow float32 to inf"),
    (np.array([1.0, 2.0]), "int64", "save it as int64 (whole numbers)"),
])
def test_a_cast_that_would_change_values_names_input_dtypes_and_fix(array, dtype, why) -> None:
    from portkit.specs import cast_to

    with pytest.raises(UsageError, match=rf"^--inputs in\.npz: input 'x' is {array.dtype} but "
                                         rf"the model takes {dtype}; .*{re.escape(why)}"):
        cast_to(array, dtype, "--inputs in.npz", "x")


def test_inputs_files_are_cast_and_refuse_non_finite_values(tmp_path) -> None:
    path = tmp_path / "in.npz"
    np.savez(path, x=np.array([[1.0, np.nan, np.inf]]))
    spec = [TensorSpec("x", (1, 3), "float32")]
    with pytest.raises(UsageError, match=r"input 'x' holds 1 NaN and 1 inf of 3 values; .* "
                                         r"--allow-nonfinite"):
        load_inputs_file(str(path), spec)
    [sample] = load_inputs_file(str(path), spec, allow_nonfinite=True)
    assert sample["x"].dtype == np.float32 and np.isnan(sample["x"][0, 1])


@pytest.mark.parametrize("bad", ["x:0x3", "x:1x-2", "x:-1"])
def test_a_zero_or_negative_dimension_is_refused_when_parsed(bad) -> None:
    with pytest.raises(UsageError, match=rf"--input '{re.escape(bad)}': every dimension must "
                                         r"be at least 1"):
        parse_input_flag(bad)


def test_a_fixed_dimension_or_dtype_the_model_does_not_take_is_refused() -> None:
    stored = [TensorSpec("x", (1, 3, 32, 32), "float32")]
    with pytest.raises(UsageError, match=r"m\.pt2: --input x:2x3x32x32: the model takes "
                                         r"x: 1x3x32x32 float32 .* --input x:1x3x32x32"):
        resolve_inputs("m.pt2", stored, [parse_input_flag("x:2x3x32x32")])
    with pytest.raises(UsageError, match=r"takes float32, not int64; drop ':int64'"):
        resolve_inputs("m.pt2", stored, [parse_input_flag("x:1x3x32x32:int64")])


def test_calibration_holds_back_its_last_samples(tmp_path) -> None:
    path = tmp_path / "c.npz"
    np.savez(path, x=np.arange(40, dtype=np.float32).reshape(40, 1, 1))
    specs = [TensorSpec("x", (1, 1), "float32")]
    calibrated = load_calibration(str(path), specs, holdout=32)
    assert [float(s["x"][0, 0]) for s in calibrated] == list(range(8))
    assert len(load_calibration(str(path), specs)) == 40
    assert calibrated_part("c.npz", 132, 32) == 100
    with pytest.raises(UsageError, match=r"--calibration c.npz: 32 sample\(s\); portkit holds "
                                         r"back the last 32 .* give about 132"):
        calibrated_part("c.npz", 32, 32)
