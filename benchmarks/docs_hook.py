"""The docs site's MkDocs hook (``hooks:`` in mkdocs.yml), for ``make docs``:

- **benchmark tables from the results**: each ``<!-- NAME:start -->`` ... ``<!-- NAME:end -->``
  block of a page is replaced, in the built page, by what the generator that owns NAME renders
  from its committed ``benchmarks/results/*.json`` (the same function its ``--readme`` writes
  with); a block no generator owns, or a generator's block on no page, fails the build;
- **repository files linked from the pages** (``../benchmarks/results/zoo.json``,
  ``../examples/portkit.toml``): copied into the site under ``repo/`` and the links pointed
  there, so they work both on GitHub and in the site; a link to a file that does not exist is
  left alone, and ``mkdocs build --strict`` fails on it;
- **the JSON report schema kept true**: a ``<!-- schema: KIND [PREFIX] -->`` line before a table
  on docs/report-schema.md says the table's first column must name exactly the keys the
  snapshot ``tests/report_keys.json`` holds for that kind of report, at that prefix.

    python -m benchmarks.docs_hook     # rewrite the committed blocks in docs/*.md from the results
"""

from __future__ import annotations

import json
import posixpath
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `benchmarks` is not installed; MkDocs loads this file by path
    sys.path.insert(0, str(ROOT))

from benchmarks import (  # noqa: E402 - after the path above
    debug,
    dynamic,
    executorch,
    generation,
    generation_policy,
    generation_policy_int4,
    generation_policy_quantized,
    probes,
    profiles,
    quantize_report,
    report,
    tflite_vs_ort,
    tolerance,
    transformer_int8,
)

DOCS = ROOT / "docs"
SNAPSHOT = ROOT / "tests" / "report_keys.json"
# docs/safety.md's "before" column: the same probes on the code before issue 13, the r3-
# ones (issue 27's, rows 27.N) on the code before issue 27 (each row's "before": the commit).
PROBES_BEFORE = probes.RESULTS.with_name("probes-before.json")


def _load(path: Path) -> Any:
    return json.loads(path.read_text())


# Each block's name (from its generator's START marker) and how the generator renders it.
RENDERERS: dict[str, Callable[[], str]] = {
    report.START: lambda: report.markdown(_load(report.RESULTS)),
    quantize_report.START: lambda: quantize_report.markdown(_load(quantize_report.RESULTS)),
    dynamic.START: lambda: dynamic.markdown(_load(dynamic.RESULTS)),
    tolerance.START: lambda: tolerance.markdown(_load(tolerance.RESULTS)),
    probes.START: lambda: probes.markdown(_load(probes.RESULTS)["probes"],
                                          _load(PROBES_BEFORE)["probes"]),
    tflite_vs_ort.START: lambda: tflite_vs_ort.markdown(tflite_vs_ort.RESULTS),
    executorch.START: lambda: executorch.markdown(executorch.RESULTS),
    generation.START: lambda: generation.markdown(generation.RESULTS),
    generation_policy.START: lambda: generation_policy.markdown(_load(generation_policy.RESULTS)),
    generation_policy_quantized.START: lambda: generation_policy_quantized.markdown(
        _load(generation_policy_quantized.RESULTS)),
    generation_policy_int4.START: lambda: generation_policy_int4.markdown(
        _load(generation_policy_int4.RESULTS)),
    profiles.START: lambda: profiles.markdown(profiles.RESULTS),
    debug.START: lambda: debug.markdown(_load(debug.RESULTS)),
    transformer_int8.START: lambda: transformer_int8.markdown(_load(transformer_int8.RESULTS)),
}
BLOCK = re.compile(r"<!-- ([a-z0-9_]+):start -->\n(.*?)<!-- \1:end -->", re.S)
REPO_LINK = re.compile(r"\]\((\.\./[^)\s#]+)")
SCHEMA = re.compile(r"^<!-- schema: ([a-z_]+)(?: (\S+))? -->\n+((?:\|.*\n)+)", re.M)


class DocsError(Exception):
    """A page and the data it is generated from disagree."""


def render_blocks(markdown: str, page: str, seen: set[str] | None = None) -> str:
    """``markdown`` with every marked block rendered afresh from the results."""

    def fresh(match: re.Match[str]) -> str:
        start = f"<!-- {match[1]}:start -->"
        if start not in RENDERERS:
            raise DocsError(f"{page}: no generator renders the block {start}")
        if seen is not None:
            seen.add(start)
        table = RENDERERS[start]().strip("\n")
        return f"{start}\n{table}\n<!-- {match[1]}:end -->"

    return BLOCK.sub(fresh, markdown)


def check_schema(markdown: str, page: str) -> None:
    """Each ``<!-- schema: KIND [PREFIX] -->`` table names exactly the snapshot's keys."""
    snapshot = _load(SNAPSHOT)
    for kind, prefix, table in SCHEMA.findall(markdown):
        if kind not in snapshot:
            raise DocsError(f"{page}: {SNAPSHOT.name} has no report kind {kind!r}")
        want = {k[len(prefix):] for k in snapshot[kind] if k.startswith(prefix)}
        want = {k for k in want if k and not re.search(r"[.\[]", k)}
        rows = table.splitlines()[2:]  # past the header and its rule
        got = {key for r in rows for key in re.findall(r"`([^`]+)`", r.split("|")[1])}
        if got != want:
            raise DocsError(f"{page}: the {kind} {prefix or 'top-level'} keys differ from "
                            f"{SNAPSHOT.relative_to(ROOT)}: missing {sorted(want - got)}, "
                            f"not in the reports {sorted(got - want)}")


def _repo_target(page: str, link: str) -> str | None:
    """A link's repository path (``benchmarks/results/zoo.json``) when it leaves docs/ for
    a file that exists, else None."""
    path = posixpath.normpath(posixpath.join("docs", posixpath.dirname(page), link))
    return path if not path.startswith(("docs/", "../")) and (ROOT / path).is_file() else None


# --- MkDocs events -------------------------------------------------------------------------

_SEEN: set[str] = set()


def on_files(files: Any, config: Any) -> Any:
    """Every repository file a page links to goes into the site, under ``repo/``."""
    from mkdocs.structure.files import File

    wanted = set()
    for f in files.documentation_pages():
        for link in REPO_LINK.findall(Path(f.abs_src_path).read_text()):
            if target := _repo_target(f.src_uri, link):
                wanted.add(target)
    for target in sorted(wanted):
        files.append(File.generated(config, f"repo/{target}", abs_src_path=str(ROOT / target)))
    return files


def on_pre_build(config: Any) -> None:
    _SEEN.clear()


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Blocks rendered from the results, repository links pointed at their copies, and the
    schema page checked against the snapshot."""
    from mkdocs.exceptions import PluginError

    src = page.file.src_uri
    try:
        markdown = render_blocks(markdown, src, _SEEN)
        check_schema(markdown, src)
    except DocsError as e:
        raise PluginError(str(e)) from e

    def local(match: re.Match[str]) -> str:
        target = _repo_target(src, match[1])
        if target is None:
            return match[0]
        return "](" + posixpath.relpath(f"repo/{target}", posixpath.dirname(src) or ".")

    return REPO_LINK.sub(local, markdown)


def on_post_build(config: Any) -> None:
    from mkdocs.exceptions import PluginError

    missing = sorted(set(RENDERERS) - _SEEN)
    if missing:
        raise PluginError(f"no page has the block {', '.join(missing)}")


def main() -> None:
    """Rewrite the committed blocks of docs/*.md, so the pages read on GitHub match the site."""
    seen: set[str] = set()
    for page in sorted(DOCS.rglob("*.md")):
        text = page.read_text()
        new = render_blocks(text, str(page.relative_to(DOCS)), seen)
        if new != text:
            page.write_text(new)
            print(f"rewrote {page.relative_to(ROOT)}")
    if missing := sorted(set(RENDERERS) - seen):
        raise SystemExit(f"no page has the block {', '.join(missing)}")


if __name__ == "__main__":
    main()
