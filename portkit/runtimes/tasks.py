"""What a worker does with a model: describe it, run it as the reference, run it as an artifact.

These functions run inside ``portkit.runtimes.worker`` processes; they take and return plain,
picklable values.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from portkit.errors import PortkitError, UsageError
from portkit.formats import Format
from portkit.formats.pte import program_report
from portkit.formats.tflite import mobile_report
from portkit.options import Feed, LoadOptions, Scalar
from portkit.policies import KindHints, hidden_width
from portkit.results import ModelInfo
from portkit.runtimes import registry
from portkit.runtimes import steps as steps_
from portkit.runtimes.base import Session
from portkit.runtimes.binding import Binding, artifact_feeds, bind_inputs, bound_feeds
from portkit.runtimes.worker import out_of_memory, task
from portkit.shapes import (
    Shapes,
    describe_size,
    free_sizes,
    resized,
    resolve_inputs,
    validation_sizes,
)
from portkit.specs import (
    TensorSpec,
    calibrated_part,
    load_inputs_file,
    make_inputs,
    matched_by_position,
    read_arrays,
)
from portkit.traces import Trace


@dataclass(frozen=True)
class Reference:
    """The source model's inputs and outputs for each seeded (or given) input sample.

    ``inputs`` are what an artifact is fed; the feeds also hold the ``constants`` the source
    ran with (``--const``), which the artifact has bound and doesn't take.
    """

    runtime: str
    inputs: tuple[TensorSpec, ...]
    feeds: tuple[dict[str, np.ndarray], ...]
    outputs: tuple[dict[str, np.ndarray], ...]
    constants: Mapping[str, Scalar] = field(default_factory=dict)
    steps: int = 1  # consecutive calls per sample; feeds and outputs are unrolled
    state: Mapping[str, str] = field(default_factory=dict)  # input <- the output fed back
    file_samples: int = 0  # samples in the inputs file (0: seeded inputs)
    # A dynamic model's samples by size, in order: (``ids 3x33``, count); empty: one size.
    sizes: tuple[tuple[str, int], ...] = ()
    # What portkit decided in feeding the source: sizes dropped, arrays matched by position.
    notes: tuple[str, ...] = ()
    hints: KindHints = KindHints()  # token ids in, the hidden width: what its outputs may be

    def by_size(self) -> list[tuple[str, slice]]:
        """Each size's label and its samples' slice of ``feeds``/``outputs`` (one unlabelled
        slice when the model was run at one size)."""
        if not self.sizes:
            return [("", slice(0, len(self.feeds)))]
        found, start = [], 0
        for label, n in self.sizes:
            found.append((label, slice(start, start + n)))
            start += n
        return found


@dataclass(frozen=True)
class ArtifactRun:
    """An artifact run on one runtime and device, once per sample."""

    outputs: tuple[dict[str, np.ndarray], ...]
    bindings: tuple[Binding, ...]
    seconds: float


@task
def describe(path: str, fmt: Format, options: LoadOptions = LoadOptions()) -> ModelInfo:
    """What a model declares; a ``.tflite`` is read from its flatbuffer (Flex models included),
    a ``.pte``'s delegation from its program."""
    if fmt is Format.TFLITE:
        mobile = mobile_report(Path(path))
        if mobile.builtin_only:  # "runs on the builtin interpreter" only if the interpreter agrees
            registry.get("tflite").verify(Path(path))  # type: ignore[attr-defined]
        specs = [tuple(TensorSpec(t.name, tuple(d if d >= 0 else None for d in t.shape), t.dtype)
                       for t in ts) for ts in (mobile.inputs, mobile.outputs)]
        return ModelInfo(fmt, specs[0], specs[1], mobile.op_counts, mobile)
    _runtime, session = registry.load_source(Path(path), fmt, options)
    program = program_report(Path(path)) if fmt is Format.EXECUTORCH else None
    return ModelInfo(fmt, tuple(session.inputs), tuple(session.outputs), session.op_counts(),
                     executorch=program)


def input_specs(path: str, fmt: Format, given: list[TensorSpec],
                options: LoadOptions = LoadOptions(), shapes: Shapes = Shapes()
                ) -> list[TensorSpec]:
    """The source's inputs as ``reference`` resolves them without an inputs file: the shapes
    it stores, ``--input`` and ``--dim`` over them, a free batch dimension's example as its
    range's bottom (``shapes.resolve_inputs``).

    Raises:
        UsageError: A shape is unknown, or the model takes a Python scalar (bind it with
            ``--const``).
    """
    _runtime, session = registry.load_source(Path(path), fmt, options)
    fed, _ = split_constants(Path(path).name, session, {})
    return resolve_inputs(Path(path).name, fed, given, shapes=shapes)


def split_constants(model_name: str, session: Session, constants: Mapping[str, Scalar]
                    ) -> tuple[list[TensorSpec], dict[str, np.ndarray]]:
    """The inputs left to feed once ``constants`` are bound, and each constant as the array the
    session takes (its dtype and shape).

    Raises:
        UsageError: A constant names no input, fits no input's shape, or a Python scalar
            argument is left unbound.
    """
    names = [s.name for s in session.inputs]
    unknown = [n for n in constants if n not in names]
    if unknown:
        raise UsageError(f"{model_name}: --const {', '.join(unknown)}: no such input; the "
                         f"model's inputs are {', '.join(names) or '(none)'}")
    unbound = [n for n in session.scalar_args if n not in constants]
    if unbound:
        takes = ", ".join(f"{n}: {session.scalar_args[n]}" for n in unbound)
        flags = " ".join(f"--const {n}=VALUE" for n in unbound)
        raise UsageError(f"{model_name}: forward takes {takes}, which portkit can't feed as a "
                         f"tensor; pass {flags} (e.g. --const {unbound[0]}=16000)")
    arrays = {}
    for spec in session.inputs:
        if spec.name in constants:
            value, dtype = constants[spec.name], np.dtype(spec.dtype or "float32")
            if dtype.kind in "iub" and isinstance(value, float) and not value.is_integer():
                raise UsageError(f"{model_name}: --const {spec.name}={value}: the input is "
                                 f"{spec.describe()}; give a whole number")
            shape = spec.shape if spec.is_static else ()
            arrays[spec.name] = np.full(shape, value, dtype=dtype)
    return [s for s in session.inputs if s.name not in constants], arrays


@task
def reference(path: str, fmt: Format, feed: Feed) -> Reference:
    """Run the source model (``path``, a ``fmt`` file) as ``feed`` says to get reference outputs.

    Seeded sample ``i`` uses ``feed.seed + i``; an inputs file (``feed.file``) gives its own
    samples. It runs on the first runtime that loads the file (``registry.load_source``), named
    in the result. Inputs named in ``feed.constants`` (``--const``) get that value in every
    sample and are not among the reference's ``inputs`` (the artifact has them bound). With
    ``feed.steps`` > 1 each sample is that many calls, each fed the ``feed.state`` (input <-
    output, guessed when not given) the previous call returned (``runtimes.steps``); later
    calls' other inputs are seeded anew, or the inputs file's next samples. The file's arrays
    are cast to the inputs' dtypes where no value changes (``specs.cast_to``) and hold no
    NaN/inf unless ``feed.allow_nonfinite``; ``feed.flag`` names the file in errors, and its
    arrays named in ``feed.ignore`` are no inputs (``--eval``'s labels). With
    ``feed.held_back``, the file is ``--calibration`` and only its last ``held_back`` samples
    are used: the ones the quantized artifact was not calibrated on. A model with dynamic
    dimensions (``feed.shapes``: ``--dim``, ``--static``) also runs at the
    ``validation_sizes``, on its samples ``resized`` (one step per sample only).

    Raises:
        UsageError: Bad inputs, constants or state pairs; an inputs file with fewer samples
            than ``samples``; or the model failed on an input whose dtype it doesn't declare
            (TorchScript) and which was not float32.
    """
    name = Path(path).name
    runtime, session = registry.load_source(Path(path), fmt, feed.load)
    constants, steps, samples, flag = dict(feed.constants), feed.steps, feed.samples, feed.flag
    inputs_file = str(feed.file) if feed.file else None  # absolute: see run_reference
    fed, fixed = split_constants(name, session, constants)
    arrays = read_arrays(inputs_file, flag, feed.ignore) if inputs_file else None
    specs = resolve_inputs(name, fed, list(feed.inputs), arrays, flag, feed.shapes)
    file_samples = 0
    if inputs_file:
        given_feeds = load_inputs_file(inputs_file, specs, flag, feed.allow_nonfinite,
                                       feed.ignore)
        file_samples = len(given_feeds)
        if feed.held_back:
            calibrated_part(inputs_file, file_samples, feed.held_back)
            given_feeds = given_feeds[-feed.held_back:]
        if len(given_feeds) % steps:
            raise UsageError(f"{flag} {inputs_file}: {len(given_feeds)} samples are not a "
                             f"whole number of {steps}-step sequences (--steps {steps})")
        first = given_feeds[::steps]
        if len(first) < samples:  # never judged on fewer inputs than the policy says
            raise UsageError(
                f"{flag} {inputs_file}: {len(first)} sample(s), but the {samples}-input policy "
                f"compares over {samples} (--samples): give at least {samples} representative "
                f"samples on an extra leading axis, or --samples {len(first)} to be judged on "
                "these alone")

        def more(i: int, k: int) -> dict[str, np.ndarray]:
            return given_feeds[i * steps + k]
    else:
        first = [make_inputs(specs, feed.seed + i) for i in range(samples)]

        def more(i: int, k: int) -> dict[str, np.ndarray]:
            return make_inputs(specs, feed.seed + samples + i * steps + k)
    specs = [replace(s, shape=tuple(first[0][s.name].shape), dtype=first[0][s.name].dtype.name)
             for s in specs]
    order = [s.name for s in session.inputs]  # the model's order, constants in place

    def full(f: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {n: {**f, **fixed}[n] for n in order}
    try:
        pairs = {}
        if steps != 1 or feed.state:  # state_pairs refuses a step count below 1
            pairs = steps_.state_pairs(name, specs, session.run(full(first[0])),
                                       dict(feed.state), steps)
        feeds, outputs = steps_.unroll([full(f) for f in first], session.run, steps, pairs,
                                       lambda i, k: full(more(i, k)))
    except Exception as e:
        _explain(name, fed, specs, f"{flag} {inputs_file}" if inputs_file else "--input", e)
        raise
    sizes: list[tuple[str, int]] = []
    notes = matched_by_position(fed, arrays, flag) if arrays else []
    others = validation_sizes(specs) if steps == 1 and not pairs else []
    for size in others:  # the source defines what it takes: a size it refuses is not judged
        more_feeds = [full(f) for f in resized(first, specs, size)]
        try:
            more_outputs = [session.run(f) for f in more_feeds]
        except Exception as e:  # noqa: BLE001 - the model's own refusal, whatever it raises
            if isinstance(e, PortkitError) or out_of_memory(e)[0]:
                raise
            notes.append(f"not validated at {describe_size(specs, size)}: the source itself "
                         f"raised {_said(e)} there")
            continue
        if not sizes:
            sizes.append((describe_size(specs, free_sizes(specs)), len(feeds)))
        feeds += more_feeds
        outputs += more_outputs
        sizes.append((describe_size(specs, size), len(more_feeds)))
    return Reference(runtime.name, tuple(specs), tuple(feeds), tuple(outputs), constants,
                     steps, pairs, file_samples, tuple(sizes), tuple(notes),
                     kind_hints(session, specs))


def kind_hints(session: Session, specs: Sequence[TensorSpec]) -> KindHints:
    """What a source's inputs and weights say its outputs hold: token ids in (an int32 or int64
    input of rank 2, ``[batch, seq]``; an image of uint8 is no text) and, for such a model, its
    hidden width."""
    tokens = any(s.dtype in ("int32", "int64") and len(s.shape or ()) == 2 for s in specs)
    return KindHints(tokens, hidden_width(session.weight_shapes()) if tokens else None)


def _said(error: Exception) -> str:
    """``ValueError (the last line of its message)``, at most 200 characters of it."""
    kind = type(error).__name__
    last = str(error).strip().splitlines()[-1] if str(error).strip() else ""
    last = last.removeprefix(f"{kind}: ")[:200]
    return f"{kind} ({last})" if last else kind


def _explain(name: str, fed: list[TensorSpec], specs: list[TensorSpec], source: str,
             error: Exception) -> None:
    """Turn the source model's own failure on inputs that passed every check into the user's
    error (exit 2, not "a bug in portkit"): naming the input fed a dtype the model doesn't
    declare (TorchScript keeps none) when there is one, else what was fed (``source``: where
    it came from, ``--input`` or ``--inputs FILE``). Memory errors are left to the worker,
    which reports them as such (exit 5).

    Raises:
        UsageError: The model raised something other than a PortkitError or a memory error.
    """
    if isinstance(error, PortkitError) or out_of_memory(error)[0]:
        return
    undeclared = {s.name for s in fed if not s.dtype}
    odd = [s for s in specs if s.name in undeclared and s.dtype != "float32"]
    if odd:
        what = ", ".join(f"{s.name!r} as {s.dtype}" for s in odd)
        raise UsageError(
            f"{name}: the model failed on input {what} ({_said(error)}); it declares no input "
            f"dtypes, so the dtype came from {source}: give the dtype the model takes (e.g. "
            "float32)") from None
    shown = ", ".join(f"{s.name}:{'x'.join(map(str, s.shape))}:{s.dtype}" for s in specs)
    raise UsageError(
        f"{name}: the model itself raised {_said(error)} when run on {shown}; check that these "
        f"inputs are what it takes (shapes and dtypes from {source} or the model)") from None


@task
def run_artifact(path: str, fmt: Format, runtime: str, device: str,
                 feeds: tuple[dict[str, np.ndarray], ...], specs: list[TensorSpec],
                 prefer_channels_last: bool = False, steps: int = 1,
                 state: Mapping[str, str] | None = None,
                 output_names: Sequence[str] = ()) -> ArtifactRun:
    """Load an artifact and run it on each sample, mapped to its names and layout; with
    ``state``, each of a sample's ``steps`` calls after the first is fed the state the artifact
    itself returned (``output_names``: the reference's, to match the artifact's outputs)."""
    session = registry.get(runtime).load(Path(path), fmt, device)
    bindings = bind_inputs(specs, session.inputs, prefer_channels_last)
    start = time.perf_counter()
    outputs = steps_.run_fed_back(session.run,
                                  lambda sample: artifact_feeds(session, bindings, sample),
                                  feeds, steps, dict(state or {}), bindings, output_names,
                                  session.inputs)
    return ArtifactRun(tuple(outputs), tuple(bindings), (time.perf_counter() - start) / len(feeds))


@task
def run_artifact_everywhere(path: str, fmt: Format, runtime: str,
                            feeds: tuple[dict[str, np.ndarray], ...], specs: list[TensorSpec],
                            prefer_channels_last: bool = False, steps: int = 1,
                            state: Mapping[str, str] | None = None,
                            output_names: Sequence[str] = ()
                            ) -> list[tuple[str, ArtifactRun | str]]:
    """``run_artifact`` on every device the runtime has here; a failed device gives its error."""
    results: list[tuple[str, ArtifactRun | str]] = []
    for device in registry.get(runtime).devices():
        try:
            results.append((device, run_artifact(path, fmt, runtime, device, feeds, specs,
                                                 prefer_channels_last, steps, state,
                                                 output_names)))
        except UsageError:  # a feed the artifact refuses (past a bound): so on every device
            raise
        except Exception as e:  # noqa: BLE001 - one device failing must not hide the others
            results.append((device, f"{type(e).__name__}: {e}"))
    return results


@task
def trace(path: str, fmt: Format,
          feeds: Mapping[str, np.ndarray] | Sequence[Mapping[str, np.ndarray]], folder: str,
          runtime: str | None = None, prefer_channels_last: bool = False,
          options: LoadOptions = LoadOptions(), constants: Sequence[str] = ()) -> Trace:
    """Run a model once with every intermediate tensor exposed (``portkit debug``).

    Args:
        path: The model (source or artifact).
        fmt: Its format.
        feeds: The reference's feeds (sample 0, or all samples of which the first is used), by
            the *source's* input names and layout; mapped to the model's names, layout and
            dtypes as ``run_artifact`` maps them (``binding``).
        folder: An absolute directory for the tensors' ``.npy`` files.
        runtime: The runtime to trace on; None for the first that loads the file
            (``registry.load_source``).
        prefer_channels_last: Bind 4-D inputs NHWC first (the converter makes NHWC).
        options: Load options (signature, trust).
        constants: Feeds the source was given with ``--const``, which an artifact has bound and
            doesn't take: dropped when the model doesn't take them.

    Returns:
        The trace: every tensor in topological order, inputs first, and which are outputs.

    Raises:
        UsageError: The runtime can't expose intermediates.
        PortkitError: The feeds fit none of the model's inputs.
    """
    sample = dict(feeds if isinstance(feeds, Mapping) else feeds[0])
    if runtime is None:
        rt, session = registry.load_source(Path(path), fmt, options)
    else:
        rt = registry.get(runtime)
        session = rt.load(Path(path), fmt, "cpu", options)
    if len(sample) > len(session.inputs):
        sample = {n: a for n, a in sample.items() if n not in constants}
    specs = [TensorSpec(n, tuple(a.shape), a.dtype.name) for n, a in sample.items()]
    sample = bound_feeds(session, specs, sample, prefer_channels_last)
    tensors = session.trace({s.name: sample[s.name] for s in session.inputs}, Path(folder))
    return Trace(path, fmt.value, rt.name, tuple(tensors), tuple(session.traced_outputs()))
