"""Click options shared by several commands, each declared once and shown in a headed section
of ``--help`` (cloup option groups: ``section``), so ``convert``, ``validate``, ``debug``,
``bench`` and ``check`` spell a flag the same way; every option maps to the library keyword
argument of the same name. The parity policy's numbers come from ``policies.Numbers``.

cloup, not rich-click or click-option-group: its sections render through click's own help
formatter (plain text, the same in a terminal, a CI log and a test), it subclasses click's
commands (``click.testing`` and the ``ParamType``s here work unchanged), and the same package
gives the command list sections too."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import cloup

from portkit import bounds
from portkit.errors import UsageError
from portkit.policies import NUMBERS

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


def timeout(default: float = 900, what: str = "each step (load, convert, run)") -> Callable[[F], F]:
    """``--timeout``: seconds a worker step may take."""
    return click.option("--timeout", type=Number(bounds.TIMEOUT), default=default,
                        show_default=True,
                        help=f"Seconds {what} may take in its worker (0 < SECONDS <= a week).")


def section(title: str, example: str, *options: Callable[[F], F]) -> Callable[[F], F]:
    """A headed section of ``--help`` (a cloup option group) holding ``options``, with an
    example line under its title."""
    return cloup.option_group(title, *options, help=f"e.g. {example}")


INPUT = click.option(
    "--input", "inputs", multiple=True, metavar="NAME:SHAPE[:DTYPE]",
    help="Input shape the model doesn't store, e.g. x:1x3x224x224 or ids:1x128:int64; a name "
         "in place of a size leaves that dimension dynamic (x:Nx3x224x224; its range: --dim); "
         "a size for a dimension the model keeps dynamic is its example. Repeat per input.")
DIM = click.option(
    "--dim", "dims", multiple=True, metavar="NAME=LO..HI",
    help="The sizes a dynamic dimension takes, e.g. N=1..32 (N as --input x:Nx3x224x224 names "
         "it, or the model does: batch, ids.1, a dim_param) [default: the source's range, else "
         "1..64, or up to the --input size]. Keeping it dynamic is then a requirement (exit 3 "
         "where no route can; else convert fixes it at its example size and says so); K..K "
         "fixes it. Repeat per dimension.")
STATIC = click.option(
    "--static", is_flag=True,
    help="Fix every dimension at its example size: a fixed-shape artifact (it converts faster; "
         "some delegates need it), validated at that size only.")
SEQ_BUCKETS = click.option(
    "--seq-buckets", metavar="LEN,...|auto",
    help="Where no route keeps a sequence dimension dynamic in TFLite: one signature per "
         "length in the one .tflite, each validated at its length, e.g. 16,64,128; auto: the "
         "top of the sequence's range and its halvings, at most 4 (2..128: 16,32,64,128) "
         "[default: off, the sequence is fixed at its example size]. The TFLite runtime picks "
         "the signature of the input's length; another length is an error naming them.")
CONST = click.option(
    "--const", "consts", multiple=True, metavar="NAME=VALUE",
    help="Bind an input to a constant in the artifact, e.g. sr=16000 (TorchScript int/float/"
         "bool arguments, ONNX inputs): the artifact no longer takes it, the source runs with "
         "it as the reference. Repeat per input.")
STEPS = click.option(
    "--steps", type=click.IntRange(min=1), default=1, show_default=True,
    help="Consecutive calls per sample for a stateful model (state in, new state out): each "
         "call after the first is fed the state the previous returned, the artifact its own.")
STATE = click.option(
    "--state", multiple=True, metavar="IN=OUT",
    help="With --steps: output OUT is fed back as input IN (default: pairs guessed by name and "
         "shape, e.g. h <- hn). Repeat per state tensor.")
INPUTS_FILE = click.option(
    "--inputs", "inputs_file", type=click.Path(path_type=Path),
    help="An .npz of input arrays (by input name, or in order when no array is named for an "
         "input; samples on an extra leading axis, or on the first axis where the model's "
         "batch is free) instead of seeded ones; it gives the shapes and dtypes the model "
         "doesn't store.")
SEED = click.option("--seed", type=Number(bounds.SEED), default=0, show_default=True,
                    help="Seed of generated inputs (0 to 2**32-1).")
ALLOW_NONFINITE = click.option(
    "--allow-nonfinite", is_flag=True,
    help="Let NaN/inf through in --inputs and --calibration (else exit 2), and compare "
         "non-finite outputs exactly: same places, same values (else an output holding any "
         "fails).")
OUTPUT_KIND = click.option(
    "--output-kind", "output_kinds", multiple=True, metavar="NAME=KIND",
    help="What an output holds: classifier (judged by top-k agreement too), embedding or "
         "regression (cosine and scaled error). Default: guessed (shown in the report). Repeat "
         "per output.")


def number(key: str) -> Callable[[F], F]:
    """The flag of one of the parity policy's numbers, as ``policies.Numbers`` declares it."""
    declared = NUMBERS[key]
    return click.option(declared.bound.flag, *declared.aliases, key,
                        type=Number(declared.bound), help=declared.help)


def shapes(*options: Callable[[F], F]) -> Callable[[F], F]:
    """The shapes section: ``--input``, ``--dim`` and ``--static`` (or those given; with
    ``--seq-buckets``, its example too)."""
    buckets = ", or --seq-buckets 16,64,128" if SEQ_BUCKETS in options else ""
    return section("Shapes", f"--input x:Nx3x224x224 --dim N=1..32, or --static{buckets}",
                   *(options or (INPUT, DIM, STATIC)))


def inputs(*options: Callable[[F], F]) -> Callable[[F], F]:
    """The inputs section: what the source and the artifact are run on (or those given)."""
    return section("Inputs compared on", "--inputs samples.npz, --seed 7, --const sr=16000",
                   *(options or (INPUTS_FILE, SEED, CONST, STEPS, STATE, ALLOW_NONFINITE)))


def tolerances(keys: tuple[str, ...] = tuple(NUMBERS), kinds: bool = True
               ) -> Callable[[F], F]:
    """The tolerances section: the parity policy's numbers ``keys`` (defaults: by precision)
    and ``--output-kind``."""
    return section("Tolerances", "--scale-tol 1e-3 --output-kind embedding=embedding",
                   *(number(k) for k in keys), *((OUTPUT_KIND,) if kinds else ()))


# Task accuracy on labelled samples.
EVAL = section(
    "Accuracy on labelled data", "--eval eval.npz --max-accuracy-drop 0.01",
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
GENERATE = click.option(
    "--generate", type=Number(bounds.GENERATE), metavar="N",
    help="Greedy tokens each side generates after the prompt, the artifact fed its own cache; "
         "every token must agree [default: 16].")
PROMPT = click.option(
    "--prompt", metavar="TEXT",
    help="The prompt, through the model directory's tokenizer [default: --inputs ids.npz's "
         "input_ids, else 8 ids seeded by --seed].")
MAX_SEQ = click.option(
    "--max-seq", type=Number(bounds.MAX_SEQ), metavar="N",
    help="Positions the artifact's cache holds, prompt and generated tokens together "
         "[default: 256].")
PREFILL = click.option(
    "--prefill", metavar="LEN,...",
    help="Prompt lengths to export prefill signatures for (TFLite: one prefill_<len> each) "
         "[default: 32].")
TASK = click.option(
    "--task", type=click.Choice(["text-generation"]),
    help="What the directory's model does, when its config's architectures don't say "
         "(*ForCausalLM).")


def generation(exports: bool = True) -> Callable[[F], F]:
    """The language-model section (a Hugging Face causal-LM directory: exported with its cache,
    judged by generating); ``exports``: with the export's ``--prefill``."""
    return section("Language models",
                   "--generate 32 --prompt 'Once upon a time' --max-seq 512"
                   + (" --prefill 32,128" if exports else ""),
                   GENERATE, PROMPT, MAX_SEQ, *((PREFILL,) if exports else ()), TASK)


# How a source model is opened.
LOADING = section(
    "Loading the source", "--signature serving_default --trust-model",
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
