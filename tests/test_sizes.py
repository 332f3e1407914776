"""No file of portkit grows past what a reader takes in at once: a file that does is split by
concern (as ``api``, ``options``, ``results`` and ``cli/render`` were), not squeezed."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "portkit"
MAX_LINES = 450


def test_no_file_is_over_the_limit() -> None:
    sizes = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines())
             for p in PACKAGE.rglob("*.py")}
    assert len(sizes) > 50  # it read the package
    assert {p: n for p, n in sizes.items() if n > MAX_LINES} == {}
