"""Click options shared by several commands, each declared once and applied as a group, so
``convert``, ``validate``, ``bench`` and ``check`` spell a flag the same way; every option maps
to the library keyword argument of the same name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from portkit import bounds
from portkit.errors import UsageError

F = TypeVar("F", bound=Callable[..., Any])


class Number(click.ParamType):
    """A numeric flag's value, refused by click (exit 2, one line naming the flag) unless its
    ``bounds.Bound`` allows it: ``nan``, ``inf`` and out-of-range values never reach a command.
    """

    def __init__(self, bound: bounds.Bound) -> None:
        self.bound = bound
        self.name = "integer" if bound.integer else "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> Any:
        if not isinstance(value, str):
            number = value
        else:
            try:
                number = int(value) if self.bound.integer else float(value)
            except ValueError:
                number = None
        if not self.bound.allows(number):
            self.fail(f"{value} is not {self.bound.describe()}", param, ctx)
        return int(number) if self.bound.integer else float(number)

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "SECONDS" if self.bound.noun == bounds.TIMEOUT.noun else self.name.upper()


class Shard(click.ParamType):
    """``--shard K/N`` with 1 <= K <= N, checked by click; the value stays the string."""

    name = "K/N"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> Any:
        try:
            bounds.parse_shard(str(value))
        except UsageError:
            self.fail(f"{value} is not K/N with whole numbers 1 <= K <= N, e.g. 2/3", param, ctx)
        return str(value)


def group(*options: Callable[[F], F]) -> Callable[[F], F]:
    """A decorator applying ``options`` in order (as if stacked, the first on top)."""
    def apply(fn: F) -> F:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return apply


def timeout(default: float = 900, what: str = "each step (load, convert, run)") -> Callable[[F], F]:
    """``--timeout``: seconds a worker step may take."""
    return click.option("--timeout", type=Number(bounds.TIMEOUT), default=default,
                        show_default=True,
                        help=f"Seconds {what} may take in its worker (0 < SECONDS <= a week).")


INPUT = click.option(
    "--input", "inputs", multiple=True, metavar="NAME:SHAPE[:DTYPE]",
    help="Input shape the model doesn't store, e.g. x:1x3x224x224 or ids:1x128:int64; a name "
         "in place of a size leaves that dimension dynamic (x:Nx3x224x224; its range: --dim); "
         "a size for a dimension the model keeps dynamic is its example. Repeat per input.")
CONST = click.option(
    "--const", "consts", multiple=True, metavar="NAME=VALUE",
    help="Bind an input to a constant in the artifact, e.g. sr=16000 (TorchScript int/float/"
         "bool arguments, ONNX inputs): the artifact no longer takes it, the source runs with "
         "it as the reference. Repeat per input.")
STEPS = group(
    click.option("--steps", type=click.IntRange(min=1), default=1, show_default=True,
                 help="Consecutive calls per sample for a stateful model (state in, new state "
                      "out): each call after the first is fed the state the previous returned, "
                      "the artifact its own."),
    click.option("--state", multiple=True, metavar="IN=OUT",
                 help="With --steps: output OUT is fed back as input IN (default: pairs "
                      "guessed by name and shape, e.g. h <- hn). Repeat per state tensor."),
)
# Inputs to run the source and the artifact on.
INPUTS = group(
    INPUT,
    click.option("--dim", "dims", multiple=True, metavar="NAME=LO..HI",
                 help="The sizes a dynamic dimension takes, e.g. N=1..32 (N as --input "
                      "x:Nx3x224x224 names it, or the model does: batch, ids.1, a dim_param) "
                      "[default: the source's range, else 1..64, or up to the --input size]. "
                      "Keeping it dynamic is then a requirement (exit 3 where no route can; "
                      "else convert fixes it at its example size and says so); K..K fixes it. "
                      "Repeat per dimension."),
    click.option("--static", is_flag=True,
                 help="Fix every dimension at its example size: a fixed-shape artifact (it "
                      "converts faster; some delegates need it), validated at that size only."),
    CONST,
    STEPS,
    click.option("--inputs", "inputs_file", type=click.Path(path_type=Path),
                 help="An .npz of input arrays (by input name, or in order when no array "
                      "is named for an input; samples on an "
                      "extra leading axis, or on the first axis where the model's batch is "
                      "free) instead of seeded ones; it gives the shapes and dtypes the model "
                      "doesn't store."),
    click.option("--seed", type=Number(bounds.SEED), default=0, show_default=True,
                 help="Seed of generated inputs (0 to 2**32-1)."),
    click.option("--allow-nonfinite", is_flag=True,
                 help="Let NaN/inf through in --inputs and --calibration (else exit 2), and "
                      "compare non-finite outputs exactly: same places, same values (else an "
                      "output holding any fails)."),
)
# The parity policy's numbers (defaults: by precision).
TOLERANCES = group(
    click.option("--scale-tol", type=Number(bounds.SCALE_TOL),
                 help="Error allowed per element as a fraction of the output's largest "
                      "reference magnitude [default: 1e-4 fp32, 1e-2 fp16; not used when "
                      "quantized]."),
    click.option("--atol", type=Number(bounds.ATOL),
                 help="Absolute tolerance per element [default: 1e-9 fp32, 1e-6 fp16]. With "
                      "--atol or --rtol alone the rule is numpy.allclose (no scale term)."),
    click.option("--rtol", type=Number(bounds.RTOL),
                 help="Relative tolerance per element [default: 0]."),
    click.option("--samples", type=Number(bounds.SAMPLES),
                 help="Inputs to compare on, 1-10000 [default: 1; 32 when quantized, judged by "
                      "cosine and top-1/top-5 agreement]."),
    click.option("--min-cosine", type=Number(bounds.MIN_COSINE),
                 help="Lowest cosine similarity (-1 to 1) that passes."),
    click.option("--min-top1", "--top-k-agreement", "min_top1", type=Number(bounds.MIN_TOP1),
                 help="Lowest top-1 agreement (0-1) for classifier outputs."),
    click.option("--min-top5", type=Number(bounds.MIN_TOP5),
                 help="Lowest top-5 agreement (0-1) for classifier outputs."),
    click.option("--output-kind", "output_kinds", multiple=True, metavar="NAME=KIND",
                 help="What an output holds: classifier (judged by top-k agreement too), "
                      "embedding or regression (cosine and scaled error). Default: guessed "
                      "(shown in the report). Repeat per output."),
)
# Task accuracy on labelled samples.
EVAL = group(
    click.option("--eval", "eval_data", type=click.Path(path_type=Path), metavar="DATA.npz",
                 help="An .npz of inputs (as --inputs) and 'labels', each sample's class index "
                      "(int, shape (samples,)): report the top-1 accuracy of the source and of "
                      "the artifact (on its first runtime, cpu) on it."),
    click.option("--eval-output", metavar="NAME",
                 help="With --eval: the classifier output whose argmax is the prediction "
                      "[default: the model's only output]."),
    click.option("--max-accuracy-drop", type=Number(bounds.MAX_ACCURACY_DROP),
                 help="With --eval: fail the artifact (exit 1) when its top-1 is lower than "
                      "the source's by more than this share, 0-1 (0.01: one point)."),
)
# How a source model is opened.
LOADING = group(
    click.option("--signature", metavar="NAME",
                 help="SavedModel signature of the source (default: serving_default)."),
    click.option("--trust-model", is_flag=True,
                 help="Load models that run code or touch files: Keras Lambda layers and custom "
                      "objects, SavedModel file ops."),
)
RUNTIMES = click.option("--runtime", "runtimes", multiple=True, metavar="NAME",
                        help="Only these runtimes (repeat): onnxruntime, tflite, tensorflow, "
                             "torch.")
PROFILE = click.option("--profile", is_flag=True,
                       help="Also time each op with the runtime's profiler (TFLite: LiteRT's, "
                            "XNNPACK ops and builtin fallbacks apart; ONNX Runtime: session "
                            "profiling), worst first.")
JSON = click.option("--json", "as_json", is_flag=True,
                    help="Print the JSON report instead of tables.")
