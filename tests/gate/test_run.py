"""``portkit validate``, ``bench`` and ``check``: the CI gate (issue 4's must-shows)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import portkit
from portkit import gate
from tests.conftest import run_cli
from tests.schema import assert_schema

Saved = Callable[[str, str], Path]
EXAMPLE = Path(__file__).parents[2] / "examples" / "portkit.toml"


@pytest.fixture(scope="module")
def cnn_onnx(saved_models: Saved, converted) -> tuple[Path, Path]:
    """The cnn fixture as .pt2 and its ONNX conversion."""
    return saved_models("cnn", "pt2"), converted("cnn", "pt2", "onnx")


def _perturbed(onnx_path: Path, dst: Path, *, heavy: bool = False) -> Path:
    """A copy with the first weight perturbed, or (heavy) with a costly branch added as x * 0."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(onnx_path))
    graph = model.graph
    if not heavy:
        init = next(i for i in graph.initializer if numpy_helper.to_array(i).ndim == 4)
        weights = numpy_helper.to_array(init)
        init.CopyFrom(numpy_helper.from_array(weights + 0.05, init.name))
    else:
        x, y = graph.input[0].name, graph.output[0].name
        w = np.random.default_rng(0).standard_normal((256, 3, 7, 7)).astype(np.float32)
        graph.initializer.extend([numpy_helper.from_array(w, "slow_w"),
                                  numpy_helper.from_array(np.float32(0), "slow_zero")])
        for node in graph.node:  # rename the old output so the new Add can produce it
            node.output[:] = ["y_before" if o == y else o for o in node.output]
        graph.node.extend([
            helper.make_node("Conv", [x, "slow_w"], ["slow_c"], pads=[3, 3, 3, 3]),
            helper.make_node("ReduceSum", ["slow_c"], ["slow_s"], keepdims=0),
            helper.make_node("Mul", ["slow_s", "slow_zero"], ["slow_0"]),
            helper.make_node("Add", ["y_before", "slow_0"], [y]),
        ])
    onnx.save(model, str(dst))
    return dst


def _config(path: Path, body: str) -> Path:
    path.write_text(body)
    return path


def test_check_on_the_example_config_passes_with_one_junit_case_per_combination(
        tmp_path: Path) -> None:
    junit, md, report = tmp_path / "junit.xml", tmp_path / "summary.md", tmp_path / "run.json"
    summary = tmp_path / "step_summary.md"
    done = run_cli("check", EXAMPLE, "--junit", junit, "--markdown", md, "--json", report,
                   "--work-dir", tmp_path / "work", "--jobs", "2",
                   env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert done.returncode == 0, done.stdout + done.stderr
    expected = [c.id for c in gate.cases(gate.load_config(EXAMPLE))]
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "0"
    got = [f"{c.get('classname').replace('.', '/')}/{c.get('name')}"
           for c in suite.iter("testcase")]
    assert got == expected and len(got) == 4
    assert "portkit check: ✅ passed (4/4 cases)" in md.read_text()
    assert summary.read_text() == md.read_text()  # appended to the GitHub job summary
    assert_schema("check", json.loads(report.read_text()))
    results = json.loads(report.read_text())["results"]
    assert all(r["latency"]["p50_ms"] > 0 for r in results)


def test_a_broken_artifact_fails_and_the_markdown_says_why(cnn_onnx: tuple[Path, Path],
                                                           tmp_path: Path) -> None:
    source, good = cnn_onnx
    broken = _perturbed(good, tmp_path / "broken.onnx")
    config = _config(tmp_path / "portkit.toml", f"""
[[model]]
name = "cnn-shipped"
source = "{source}"
artifact = "{broken.name}"
""")
    md, junit, bundles = tmp_path / "s.md", tmp_path / "j.xml", tmp_path / "bundles"
    done = run_cli("check", config, "--markdown", md, "--junit", junit, "--save-bundle", bundles)
    assert done.returncode == 1, done.stdout + done.stderr
    text = md.read_text()
    assert "**cnn-shipped/onnx/onnxruntime**" in text and "**FAIL**" in text
    [line] = [ln for ln in text.splitlines() if ln.startswith("- onnxruntime/cpu: output")]
    assert "`output_0` max abs err" in line and "would pass with --scale-tol" in line
    failure = ET.parse(junit).getroot().find("testsuite/testcase/failure")
    assert failure is not None and "would pass with --scale-tol" in failure.get("message", "")
    # The failure replays from its bundle alone: same inputs, stored reference outputs.
    bundle = bundles / "cnn-shipped-onnx"
    assert {p.name for p in bundle.iterdir()} >= {
        "manifest.json", "inputs.npz", "reference_outputs.npz", "report.json", "artifact",
        "artifact_outputs"}
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert_schema("bundle_manifest", manifest)
    assert manifest["versions"]["onnxruntime"] and manifest["flags"]
    replay = run_cli("validate", "--bundle", bundle, "--json")
    assert replay.returncode == 1
    saved = json.loads((bundle / "report.json").read_text())
    again = json.loads(replay.stdout)
    assert_schema("validate", again)
    assert again["checks"][0]["outputs"][0]["max_abs_err"] == \
        saved["checks"][0]["outputs"][0]["max_abs_err"]


def test_baseline_flags_an_injected_slowdown_and_passes_without_it(
        cnn_onnx: tuple[Path, Path], tmp_path: Path) -> None:
    source, good = cnn_onnx
    slow = _perturbed(good, tmp_path / "slow.onnx", heavy=True)

    def config(artifact: Path) -> Path:
        return _config(tmp_path / "portkit.toml", f"""
[defaults]
p50_regression = 1.0

[[model]]
name = "cnn"
source = "{source}"
artifact = "{artifact}"
""")

    base = tmp_path / "base.json"
    assert run_cli("check", config(good), "--json", base).returncode == 0
    same = run_cli("check", config(good), "--baseline", base)
    assert same.returncode == 0, same.stdout
    md = tmp_path / "s.md"
    slowed = run_cli("check", config(slow), "--baseline", base, "--markdown", md)
    assert slowed.returncode == 1, slowed.stdout
    assert "slower than the baseline" in md.read_text() and "budget 100%" in md.read_text()


def test_shards_cover_every_case_exactly_once() -> None:
    all_cases = [gate.Case(f"m{i}", "onnx", "onnxruntime") for i in range(10)]
    parts = [gate.shard(all_cases, f"{k}/3") for k in (1, 2, 3)]
    assert sorted(c.id for p in parts for c in p) == sorted(c.id for c in all_cases)
    assert sum(len(p) for p in parts) == len(all_cases)
    with pytest.raises(portkit.errors.UsageError, match="K/N"):
        gate.shard(all_cases, "three")


def test_shard_listing_from_the_cli_partitions_the_example() -> None:
    listed = [run_cli("check", EXAMPLE, "--list", "--shard", f"{k}/3").stdout.split()
              for k in (1, 2, 3)]
    full = run_cli("check", EXAMPLE, "--list").stdout.split()
    assert sorted(x for part in listed for x in part) == sorted(full) and len(full) == 4


def test_bench_reports_percentiles_and_cv_for_onnx_and_tflite(cnn_onnx: tuple[Path, Path],
                                                              converted) -> None:
    _, onnx_path = cnn_onnx
    tflite = converted("cnn", "pt2", "tflite")
    done = run_cli("bench", onnx_path, tflite, "--min-seconds", "0.2", "--json")
    assert done.returncode == 0, done.stderr
    assert_schema("bench", json.loads(done.stdout))
    rows = json.loads(done.stdout)["rows"]
    assert [r["latency"]["runtime"] for r in rows] == ["onnxruntime", "tflite"]
    for r in rows:
        t = r["latency"]
        assert 0 < t["p50_ms"] <= t["p90_ms"] <= t["p99_ms"] and t["cv"] >= 0
        assert t["runs"] >= 30 and t["peak_rss_mb"] > 0 and t["cold_start_ms"] > 0
    assert rows[0]["p50_ratio"] == 1.0
    table = run_cli("bench", onnx_path, "--min-seconds", "0.1").stdout
    assert "p50" in table and "p99" in table and "CV" in table


def test_validate_lists_missing_devices_as_skipped(cnn_onnx: tuple[Path, Path]) -> None:
    source, onnx_path = cnn_onnx
    done = run_cli("validate", onnx_path, "--reference", source, "--json")
    assert done.returncode == 0, done.stderr
    assert_schema("validate", json.loads(done.stdout))
    checks = json.loads(done.stdout)["checks"]
    ran = [c for c in checks if not c["skipped"]]
    assert ran and ran[0]["runtime"] == "onnxruntime" and ran[0]["passed"]
    for c in checks:
        if c["skipped"]:
            assert c["device"] == "cuda" and "no CUDA device" in c["skipped"]
    bad = run_cli("validate", onnx_path, "--reference", source, "--runtime", "tflite")
    assert bad.returncode == 2 and "does not load onnx" in bad.stderr


def test_cosine_threshold_is_applied_and_named(cnn_onnx: tuple[Path, Path],
                                               tmp_path: Path) -> None:
    source, onnx_path = cnn_onnx
    # perturbed weights, judged by cosine alone (--atol 1e6 lets every element pass)
    done = run_cli("validate", _perturbed(onnx_path, tmp_path / "p.onnx"), "--reference", source,
                   "--min-cosine", "1", "--atol", "1e6", "--json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    [row] = [o for c in report["checks"] if not c["skipped"] for o in c["outputs"]]
    assert row["failed"] == ["cosine"] and report["tolerance"]["min_cosine"] == 1.0


def test_check_judges_an_artifact_at_the_sizes_convert_fixed(tmp_path: Path) -> None:
    # The GRU's batch is fixed by convert (no route keeps it); validated as dynamic, the check
    # failed at batch 3 what convert had passed.
    from portkit.fixtures import keras_models

    keras_models.gru_text().save(str(tmp_path / "gru.keras"))
    config = _config(tmp_path / "portkit.toml", f"""
[[model]]
name = "gru"
source = "{tmp_path / 'gru.keras'}"
targets = ["tflite"]
""")
    report = tmp_path / "run.json"
    done = run_cli("check", config, "--json", report, "--work-dir", tmp_path / "work")
    assert done.returncode == 0, done.stdout + done.stderr
    [result] = json.loads(report.read_text())["results"]
    assert result["passed"] and [c["size"] for c in result["checks"]] == ["", ""]
