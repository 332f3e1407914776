"""Running onnx2tf offline: shared by the ONNX -> TFLite and ONNX -> SavedModel edges.

onnx2tf downloads a sample-image file from the internet when every input looks like an image,
unless a file of that name is in the working directory; a seeded stand-in is written there (the
worker's private scratch directory) so conversion never touches the network.

onnx2tf also writes to the ONNX file it is given (sng4onnx names unnamed nodes in place, and its
shape fixes save over the input): it is given a copy in the scratch directory, never the user's
file (seen: the round trip dropped initializers an ``If`` branch reads, breaking the source).

Input shapes: an input the pipeline resolved static (``--static``, or no dynamic dimension) is
fixed at its example shape in the copy (onnx2tf's ``overwrite_input_shape`` works only through
onnxsim, which is off), so a ``dim_param`` the user fixed does not stay free, and an ``If`` the
fixed shapes decide is folded away; one with dynamic dimensions keeps them, its example shape
given as a hint for onnx2tf's test inference (``shape_hints``). When onnx2tf fails on a model
with dynamic dimensions, the error says so and suggests ``--static``. An input that reaches a
recurrent op's initial state (an LSTM's ``[layers, batch, hidden]`` state) keeps its layout:
onnx2tf would otherwise take it for a channels-first signal and transpose it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from portkit.convert import onnx_fold
from portkit.convert.dynamic import static_only
from portkit.errors import PortkitError
from portkit.specs import TensorSpec

_SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"


def run(src: Path, inputs: Sequence[TensorSpec] = (), **kwargs: Any) -> tuple[Any, Path]:
    """``onnx2tf.convert`` on ``src`` into ``./onnx2tf_out``, offline and quiet.

    Args:
        src: The ONNX model.
        inputs: Its resolved inputs: static ones are fixed at their shape, dynamic ones keep
            their dynamic dimensions.
        **kwargs: More ``onnx2tf.convert`` arguments.

    Returns:
        What onnx2tf returned (its tf_keras model) and the output folder.

    Raises:
        ConversionError: onnx2tf failed on a model with dynamic dimensions (``static_only``).
    """
    import onnx2tf

    from portkit.safety import check_onnx

    check_onnx(src)

    work = Path(os.getcwd())
    src, graph = _private_copy(src, work / "onnx2tf_in")
    sample = np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32)
    np.save(work / _SAMPLE_FILE, sample)
    out = work / "onnx2tf_out"
    fixed, hints = _shapes(graph, inputs)
    if fixed:
        graph = _fix_inputs(src, graph, fixed)
    if hints:
        kwargs["shape_hints"] = hints
    if states := rnn_states(graph):
        kwargs["keep_shape_absolutely_input_names"] = states
    try:
        model = onnx2tf.convert(
            input_onnx_file_path=str(src),
            output_folder_path=str(out),
            copy_onnx_input_output_names_to_tflite=True,
            not_use_onnxsim=True,
            non_verbose=True,
            # Else outputs bigger than free memory go to a file-backed map in TMPDIR, which the
            # worker's memory limit does not count: a memory bomb fills the disk for minutes.
            onnxruntime_output_memmap=False,
            **kwargs,
        )
    except (PortkitError, MemoryError):
        raise
    except Exception as e:  # noqa: BLE001 - onnx2tf raises anything from its op handlers
        if not hints:
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise static_only("onnx2tf", inputs, f"it failed on this model with them dynamic "
                          f"({type(e).__name__}: {first[:200]})") from e
    return model, out


def _shapes(model: Any, inputs: Sequence[TensorSpec]) -> tuple[dict[str, tuple[int, ...]],
                                                               list[str]]:
    """The ONNX inputs of ``model`` with some dimension not fixed that ``inputs`` resolve
    static, with the shape to fix them at, and ``shape_hints`` for those ``inputs`` keep
    dynamic (by name, else in order)."""
    from portkit.convert.dynamic import onnx_inputs
    from portkit.runtimes.binding import pair_by_name

    stored = onnx_inputs(model)
    if not inputs or len(stored) != len(inputs):
        return {}, []
    shapes = dict(stored)
    fixed, hints = {}, []
    for spec, (_name, onnx_name) in zip(inputs, pair_by_name([s.name for s in inputs],
                                                             list(shapes))):
        shape = shapes[onnx_name]
        if spec.shape is None or shape is None or len(shape) != len(spec.shape) \
                or any(d is None for d in spec.shape):
            continue
        if spec.dynamic:
            hints.append(f"{onnx_name}:{','.join(str(d) for d in spec.shape)}")
        elif None in shape:
            fixed[onnx_name] = tuple(int(d) for d in spec.shape)  # type: ignore[arg-type]
    return fixed, hints


def _fix_inputs(src: Path, model: Any, fixed: dict[str, tuple[int, ...]]) -> Any:
    """Write ``model`` (read from ``src``, the private copy) back with the static shapes:
    onnx2tf applies its ``overwrite_input_shape`` only through onnxsim, which portkit leaves
    off. Where the graph branches (``If``), fold what the fixed shapes decide (a ``squeeze`` of
    a batch of 1), which onnx2tf can't convert; a model with external data, or one the
    optimizer fails on, is left unfolded.

    Returns:
        The model written.
    """
    import onnx
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    onnx_fold.fix_shapes(model, fixed)
    if onnx_fold.has_control_flow(model) and not any(
            uses_external_data(t) for t in _get_all_tensors(model)):
        try:
            model = onnx_fold.fold(model)
        except Exception:  # noqa: BLE001 - the optimizer's own failure: onnx2tf gets it unfolded
            pass
    onnx.save(model, str(src))
    return model


# Where an ONNX recurrent op takes its initial state: input index -> which state.
_INITIAL_STATE = {"LSTM": (5, 6), "GRU": (5,), "RNN": (5,)}
# Ops that carry a state tensor unchanged but for its slicing.
_SLICING = {"Split", "Gather", "Slice", "Squeeze", "Unsqueeze", "Identity", "Reshape"}


def rnn_states(model: Any) -> list[str]:
    """The graph inputs of ``model`` that reach a recurrent op's initial state (through slicing
    only): ``[layers, batch, hidden]`` tensors, not channels-first signals, which onnx2tf must
    not transpose (``keep_shape_absolutely_input_names``)."""
    initializers = {i.name for i in model.graph.initializer}
    found = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        reach = {value.name}
        for node in onnx_fold.nodes(model.graph):  # in the order values are made
            if node.op_type in _SLICING and node.input and node.input[0] in reach:
                reach.update(node.output)
            elif any(node.input[i] in reach for i in _INITIAL_STATE.get(node.op_type, ())
                     if i < len(node.input)):
                found.append(value.name)
                break
    return found


def _private_copy(src: Path, folder: Path) -> tuple[Path, Any]:
    """``src`` and the external data files it names (``check_onnx`` keeps them beside it),
    copied into ``folder``, so nothing onnx2tf writes reaches the original.

    Returns:
        The copy, and its ``ModelProto`` (external data not loaded), read once for every
        use before onnx2tf runs.
    """
    import onnx
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    folder.mkdir(exist_ok=True)
    model = onnx.load(str(src), load_external_data=False)
    for tensor in _get_all_tensors(model):
        if uses_external_data(tensor):
            location = next(e.value for e in tensor.external_data if e.key == "location")
            (folder / location).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src.parent / location, folder / location)
    shutil.copy2(src, folder / src.name)
    return folder / src.name, model
