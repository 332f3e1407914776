"""The float policies against the labelled corpus (``corpus.py``): every faithful artifact
passes, every broken one fails. ``benchmarks/tolerance.py`` records the margins."""

from __future__ import annotations

from pathlib import Path

import pytest

from portkit import api
from portkit.options import POLICIES
from portkit.runtimes.worker import Pool
from tests.validators.corpus import CASES, Case, make_artifact


def test_the_corpus_spans_converters_and_magnitudes() -> None:
    faithful = [c for c in CASES if c.faithful]
    broken = [c for c in CASES if not c.faithful]
    assert len(faithful) >= 10 and len(broken) >= 10
    assert len({c.route for c in faithful}) >= 5
    assert {c.quantize for c in faithful} == {None, "fp16"}
    assert sum(c.perturb != 1.0 for c in broken) >= 3


def _policy(case: Case) -> dict[str, float | None]:
    if case.quantize is None:
        return {}
    tol = POLICIES[case.quantize]
    return {"atol": tol.atol, "rtol": tol.rtol, "scale_tol": tol.scale_tol,
            "min_cosine": tol.min_cosine}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_verdict(case: Case, workers: Pool, tmp_path: Path) -> None:
    artifact, source = make_artifact(case, tmp_path, workers)
    report = api.validate(artifact, source, inputs=case.inputs, workers=workers,
                          **_policy(case))
    worst = max((o for c in report.checks for o in c.outputs),
                key=lambda o: o.min_scale_tol_to_pass, default=None)
    assert report.passed == case.faithful, (case.why, worst)
