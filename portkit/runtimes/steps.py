"""Stateful models (state in, new state out: recurrent audio and text models) run over several
consecutive calls, each call fed the state the previous one returned (``--steps N``).

One call of such a model proves little: a converter that gets the state's layout or scale
slightly wrong shows up only once the error has gone round a few times. The reference runs its
own steps; an artifact is fed **its own** state back, so its error accumulates as it would in
an app. Feeds and outputs are unrolled (sample 0 step 0, sample 0 step 1, ...) so they compare
like independent samples.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from portkit.errors import UsageError
from portkit.runtimes.binding import Binding, candidate_perms, pair_by_name
from portkit.specs import TensorSpec

Feed = dict[str, np.ndarray]
# Words that mark a tensor as the state going in or coming out (h -> hn, state -> state_out).
_STATE_MARKS = re.compile(r"(^|[_.:/])(in|out|new|next|prev|n|0|1)$|(?<=[a-z])(n|in|out)$")


def state_pairs(model_name: str, inputs: Sequence[TensorSpec], outputs: Mapping[str, np.ndarray],
                given: Mapping[str, str], steps: int) -> dict[str, str]:
    """Which output feeds which input back: ``given`` (checked), else pairs guessed by name
    (``h``/``hn``, ``state``/``state_out``, ``c_in``/``c_out``) and equal shape and dtype.

    Args:
        model_name: For errors.
        inputs: The model's fed inputs (static).
        outputs: One call's outputs, by name.
        given: ``--state`` pairs.
        steps: ``--steps``; with 1 no state is needed.

    Raises:
        UsageError: A pair names no input or output, or their shapes differ, or ``steps`` > 1
            and no pair is given or found.
    """
    if steps < 1:
        raise UsageError(f"--steps {steps}: must be at least 1")
    specs = {s.name: s for s in inputs}
    for name, out in given.items():
        if name not in specs or out not in outputs:
            raise UsageError(
                f"{model_name}: --state {name}={out}: inputs are {', '.join(specs)}; outputs "
                f"are {', '.join(outputs)}")
        if tuple(outputs[out].shape) != tuple(specs[name].shape or ()):
            raise UsageError(f"{model_name}: --state {name}={out}: output {out} has shape "
                             f"{tuple(outputs[out].shape)}, input {specs[name].describe()}")
    if given or steps == 1:
        return dict(given)
    stem = {n: _STATE_MARKS.sub("", n.lower()) for n in [*specs, *outputs]}
    guessed = {}
    for name, spec in specs.items():
        fits = [o for o, a in outputs.items() if o != name and stem[o] == stem[name]
                and tuple(a.shape) == tuple(spec.shape or ()) and a.dtype.name == spec.dtype]
        if len(fits) == 1:
            guessed[name] = fits[0]
    if not guessed:
        raise UsageError(f"{model_name}: --steps {steps}: no output looks like the state of an "
                         f"input (inputs {', '.join(specs)}; outputs {', '.join(outputs)}); "
                         "pass --state IN=OUT")
    return guessed


def unroll(first: Sequence[Feed], run: Callable[[Feed], Feed], steps: int,
           state: Mapping[str, str], more: Callable[[int, int], Feed]
           ) -> tuple[list[Feed], list[Feed]]:
    """Run each sample's ``steps`` calls on the reference, feeding its state back.

    Args:
        first: Each sample's first feed (its state is the initial state).
        run: One call of the model.
        steps: Calls per sample.
        state: Input name -> the output fed back as it.
        more: ``more(sample, step)`` gives the other inputs of a later step.

    Returns:
        The feeds and outputs of every call, sample by sample, step by step.
    """
    feeds, outputs = [], []
    for i, feed in enumerate(first):
        for k in range(steps):
            if k:
                feed = {**more(i, k), **{n: outputs[-1][o] for n, o in state.items()}}
            feeds.append(feed)
            outputs.append(run(feed))
    return feeds, outputs


def run_fed_back(run: Callable[[Feed], Feed], to_artifact: Callable[[Feed], Feed],
                 feeds: Sequence[Feed], steps: int, state: Mapping[str, str],
                 bindings: Sequence[Binding], output_names: Sequence[str],
                 inputs: Sequence[TensorSpec]) -> list[Feed]:
    """Run an artifact over the reference's unrolled feeds, each later step fed the state the
    artifact itself returned (in its own names and layout) instead of the reference's.

    Args:
        run: One call of the artifact (artifact names).
        to_artifact: A reference feed in the artifact's names, layout and dtypes.
        feeds: The reference's unrolled feeds.
        steps: Calls per sample.
        state: Reference input name -> reference output name.
        bindings: Reference inputs bound to the artifact's.
        output_names: The reference's output names, in order (matched to the artifact's).
        inputs: The artifact's inputs.

    Returns:
        The artifact's outputs of every call.
    """
    outputs: list[Feed] = []
    art_in = {b.source: b.artifact for b in bindings}
    shapes = {s.name: s.shape for s in inputs}
    for j, feed in enumerate(feeds):
        fed = to_artifact(feed)
        if j % steps:
            out_names = dict(pair_by_name(list(output_names), list(outputs[-1])))
            for name, out in state.items():
                value = outputs[-1][out_names[out]]
                perm = (candidate_perms(tuple(value.shape), shapes[art_in[name]]) or [None])[0]
                fed[art_in[name]] = (value if perm is None else value.transpose(perm)).astype(
                    fed[art_in[name]].dtype, copy=False)
        outputs.append(run(fed))
    return outputs
