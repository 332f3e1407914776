"""The screenshot in docs/debug.md: Model Explorer showing a TFLite artifact coloured by ``portkit debug
--overlay``, taken in a real headless browser.

    pip install -c constraints.txt -e '.[all,screenshot]'   # model-explorer and playwright
    apt-get install chromium                                # Debian's; playwright drives it
    python -m benchmarks.screenshot                         # writes docs/debug-overlay.png

A fixture is exported to ONNX (``portkit convert``); a copy gets one conv's weights scaled by
1.01 and is converted to TFLite by onnx2tf; ``portkit debug`` runs that TFLite against the
clean ONNX with ``--overlay``; ``model-explorer ARTIFACT --node_data_paths OVERLAY`` serves it
and chromium, driven by playwright, saves the page once the graph has rendered.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from portkit import api
from portkit.fixtures import FIXTURES

OUT = Path(__file__).parent.parent / "docs" / "debug-overlay.png"
CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1280, "height": 900}


def perturb_last_conv(path: Path, factor: float) -> str:
    """Scale the weights of the last Conv node of an ONNX model by ``factor``, in place;
    returns the node's name."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    node = [n for n in model.graph.node if n.op_type == "Conv"][-1]
    for init in model.graph.initializer:
        if init.name == node.input[1]:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * factor, init.name))
            onnx.save(model, str(path))
            return node.name
    raise ValueError(f"{path}: the weights of {node.name} are not an initializer")


def make_case(fixture: str, folder: Path, factor: float) -> tuple[Path, Path, Path]:
    """The clean ONNX source, the TFLite made from its tampered copy, and the overlay."""
    fx = FIXTURES[fixture]
    pt2 = fx.save(folder, "pt2")
    clean = folder / f"{fixture}.onnx"
    report = api.convert(pt2, "onnx", clean, inputs=fx.input_flags)
    assert report.exit_code == 0, report.routes_tried
    tampered = folder / f"{fixture}-tampered.onnx"
    shutil.copy(clean, tampered)
    print(f"scaled the weights of {perturb_last_conv(tampered, factor)} by {factor}")
    artifact = folder / f"{fixture}.tflite"
    report = api.convert(tampered, "tflite", artifact, route="onnx2tf")
    assert report.exit_code == 0, report.routes_tried
    overlay = folder / "overlay.json"
    debug = api.debug(artifact, clean, overlay=overlay)
    div = debug.first_divergence
    print(f"portkit debug: exit {int(debug.exit_code)}, first divergence "
          f"{div and (div.source_node, div.artifact_node)}")
    return clean, artifact, overlay


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def shoot(artifact: Path, overlay: Path, out: Path, timeout: float = 120.0) -> None:
    """Serve ``artifact`` with ``overlay`` in Model Explorer and save the rendered page."""
    from playwright.sync_api import sync_playwright

    port = free_port()
    explorer = shutil.which("model-explorer", path=str(Path(sys.executable).parent))
    server = subprocess.Popen(
        [explorer or "model-explorer", str(artifact), "--node_data_paths", str(overlay),
         "--no_open_in_browser", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = _server_url(server, timeout)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--enable-unsafe-swiftshader", "--use-angle=swiftshader"])
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(url)
            page.wait_for_selector("canvas", timeout=timeout * 1000)
            page.wait_for_function(
                "() => !document.body.innerText.includes('Processing graph')",
                timeout=timeout * 1000)
            _expand_layers(page)
            page.wait_for_timeout(1500)  # the renderer's fit-to-view animation
            staged = out.with_suffix(".raw.png")
            page.screenshot(path=str(staged))
            browser.close()
        _shrink(staged, out)
    finally:
        server.terminate()
        server.wait(timeout=30)


def _server_url(server: subprocess.Popen[str], timeout: float) -> str:
    """The URL model-explorer prints once it serves (with the model and node data in it)."""
    deadline = time.monotonic() + timeout
    assert server.stdout is not None
    for line in server.stdout:
        if line.startswith("http://"):
            return line.strip()
        if time.monotonic() > deadline or server.poll() is not None:
            break
    raise RuntimeError("model-explorer did not start serving")


def _expand_layers(page: Any) -> None:
    """Open every layer (the toolbar's 'expand all layers' button) so each op shows its colour,
    then fit the graph to the view."""
    page.locator("div.expand-all").first.click()
    page.wait_for_timeout(1000)
    page.locator("mat-icon", has_text="fit_screen").first.click()
    page.mouse.move(VIEWPORT["width"] // 2, VIEWPORT["height"] - 10)  # no tooltip in the shot


def _shrink(raw: Path, out: Path) -> None:
    """A palette PNG (the page is flat colours): a tenth of the size, same look."""
    from PIL import Image

    with Image.open(raw) as img:
        img.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(
            out, optimize=True)
    raw.unlink()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixture", default="cnn", choices=sorted(FIXTURES))
    parser.add_argument("--factor", type=float, default=1.01)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    args.out.parent.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        _, artifact, overlay = make_case(args.fixture, Path(tmp), args.factor)
        shoot(artifact, overlay, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
