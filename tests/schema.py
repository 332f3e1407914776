"""The JSON reports' schema as key paths, compared against ``report_keys.json``: the keys every
kind of report had when the code was split into its layers (issue 11), which a refactor must
keep."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SNAPSHOT = Path(__file__).with_name("report_keys.json")
# Dicts keyed by data (op names, library names, output names), not by the schema.
MAPS = ("op_counts", "versions", "flags", "per_output", "constants", "state")


# Lists whose entries depend on the model (a dynamic input's dims), not on the schema.
DATA_LISTS = ("dims", "worst_ops")  # worst_ops: only when the artifact was slow


def key_paths(value: Any, path: str = "") -> set[str]:
    """``routes_tried[].hops[].tool``-style paths of every key in a JSON value."""
    found: set[str] = set()
    if isinstance(value, list) and path.rsplit(".", 1)[-1] in DATA_LISTS:
        return set()
    if isinstance(value, dict):
        if path.rsplit(".", 1)[-1].removesuffix("[]") in MAPS:
            return {f"{path}.*"}
        for key, item in value.items():
            sub = f"{path}.{key}" if path else key
            found |= {sub} | key_paths(item, sub)
    elif isinstance(value, list):
        for item in value:
            found |= key_paths(item, f"{path}[]")
    return found


def assert_schema(kind: str, report: dict[str, Any]) -> None:
    """The report has exactly the keys the snapshot holds for its kind."""
    expected = set(json.loads(SNAPSHOT.read_text())[kind])
    got = key_paths(report)
    assert got == expected, {"missing": sorted(expected - got), "new": sorted(got - expected)}
