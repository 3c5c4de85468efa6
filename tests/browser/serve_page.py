#!/usr/bin/env python3
"""The serve page in a real browser: headless Chromium, driven by Playwright.

Starts `gpu-cnn serve` on a free port of 127.0.0.1, then, as a user would:
  1. draws a 7 with mouse events on the canvas, waits for the page to show the
     network's answer, checks it is 7, and saves a screenshot;
  2. drops one of the shipped pictures on the canvas and checks the page shows the
     digit `gpu-cnn infer` reads in the same file.
The screenshot is for a person to look at (docs/serve.png is one); the checks
here only prove the page answered what the server and `infer` answer.

Usage: serve_page.py --bin target/release/gpu-cnn [--backend vulkan]
                     [--chromium /usr/bin/chromium] [--screenshot target/serve.png]
Exits non-zero, with the reason, when any check fails.
"""

import argparse
import base64
import json
import os
import pathlib
import queue
import subprocess
import sys
import threading

from playwright.sync_api import sync_playwright

ROOT = pathlib.Path(__file__).resolve().parents[2]
DROPPED = ROOT / "tests" / "images" / "3_mnist_test_18.png"
# Generous: lavapipe on two cores compiles the shaders on the first request.
ANSWER_TIMEOUT_MS = 120_000


def start_server(binary, backend):
    proc = subprocess.Popen(
        [binary, "serve", "--addr", "127.0.0.1:0", "--backend", backend],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "NODEVICE_SELECT": "1"},
    )
    lines = queue.Queue()

    def pump():
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    while True:
        try:
            line = lines.get(timeout=300)
        except queue.Empty:
            proc.kill()
            sys.exit("serve did not say where it listens within 300 s")
        if line is None:
            sys.exit(f"serve ended before listening (exit {proc.wait()}); its stderr is above")
        print(f"serve: {line}", flush=True)
        if line.startswith("listening on http://"):
            return proc, line.split()[2]


def infer_digit(binary, backend, picture):
    out = subprocess.run(
        [binary, "infer", "--json", "--backend", backend, str(picture)],
        capture_output=True,
        text=True,
        env={**os.environ, "NODEVICE_SELECT": "1"},
        timeout=600,
    )
    if out.returncode != 0:
        sys.exit(f"gpu-cnn infer failed: {out.stderr}")
    return json.loads(out.stdout.splitlines()[0])["digit"]


def answers(page):
    return int(page.get_attribute("#digit", "data-answers"))


def wait_for_answer(page, before):
    """Waits until the page has shown an answer newer than `before` and has no
    newer drawing still to answer (aria-busy), then returns the digit and status
    it shows; an error shown instead fails the test."""
    page.wait_for_function(
        """(before) => {
            const busy = document.querySelector(".answer").getAttribute("aria-busy") === "true";
            const s = document.getElementById("status");
            if (s.classList.contains("error")) return true;
            return !busy && Number(document.getElementById("digit").dataset.answers) > before;
        }""",
        arg=before,
        timeout=ANSWER_TIMEOUT_MS,
    )
    status = page.text_content("#status")
    if page.eval_on_selector("#status", "s => s.classList.contains('error')"):
        sys.exit(f"the page shows an error: {status}")
    return page.text_content("#digit").strip(), status


def draw_seven(page):
    box = page.locator("#pad").bounding_box()
    # A 7 on the 280-px square: a bar across the top, then a stroke down and left.
    points = [(80, 70), (200, 70), (170, 140), (140, 215)]
    at = lambda p: (box["x"] + p[0] * box["width"] / 280, box["y"] + p[1] * box["height"] / 280)
    page.mouse.move(*at(points[0]))
    page.mouse.down()
    for p in points[1:]:
        page.mouse.move(*at(p), steps=12)
    page.mouse.up()


def drop_picture(page, picture):
    data = base64.b64encode(picture.read_bytes()).decode()
    transfer = page.evaluate_handle(
        """([b64, name]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const t = new DataTransfer();
            t.items.add(new File([bytes], name, { type: "image/png" }));
            return t;
        }""",
        [data, picture.name],
    )
    page.dispatch_event("#pad", "dragenter", {"dataTransfer": transfer})
    page.dispatch_event("#pad", "drop", {"dataTransfer": transfer})


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "gpu-cnn"))
    ap.add_argument("--backend", default="vulkan")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--screenshot", default=str(ROOT / "target" / "serve.png"))
    a = ap.parse_args()

    want_dropped = infer_digit(a.bin, a.backend, DROPPED)
    server, url = start_server(a.bin, a.backend)
    failures = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=a.chromium, headless=True)
            page = browser.new_page(viewport={"width": 1100, "height": 1250})
            page.on("pageerror", lambda e: failures.append(f"a script error on the page: {e}"))
            page.goto(url)

            draw_seven(page)
            digit, status = wait_for_answer(page, 0)
            print(f"drawn 7: the page reads {digit} ({status})", flush=True)
            if digit != "7":
                failures.append(f"the drawn 7 was read as {digit}")
            if page.is_hidden("#inside"):
                failures.append("the feature maps are not shown after an answer")
            maps = page.locator("#maps figure").count()
            if maps < 3:
                failures.append(f"only {maps} feature maps are shown")
            if page.locator("#top3 li").count() != 3:
                failures.append("the top-3 bars are not shown")
            # The bar is drawn, not only labelled: its fill is as wide as its percentage.
            drawn = page.eval_on_selector(
                "#top3 li",
                """li => [li.querySelector('.fill').getBoundingClientRect().width
                        / li.querySelector('.bar').getBoundingClientRect().width,
                        parseFloat(li.querySelector('.pct').textContent) / 100]""",
            )
            if abs(drawn[0] - drawn[1]) > 0.02:
                failures.append(f"the first bar is filled {drawn[0]:.2f} of its width for {drawn[1]:.3f}")
            pathlib.Path(a.screenshot).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=a.screenshot, full_page=True)
            print(f"screenshot: {a.screenshot}", flush=True)

            before = answers(page)
            drop_picture(page, DROPPED)
            digit, status = wait_for_answer(page, before)
            print(f"dropped {DROPPED.name}: the page reads {digit}, infer {want_dropped} ({status})", flush=True)
            if digit != str(want_dropped):
                failures.append(f"dropped {DROPPED.name}: the page reads {digit}, infer reads {want_dropped}")
            browser.close()
    finally:
        server.terminate()
        try:
            code = server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            code = "killed after 30 s"
        if code != 0:
            failures.append(f"serve did not stop cleanly on SIGTERM: {code}")
    if failures:
        sys.exit("FAILED:\n  " + "\n  ".join(failures))
    print("browser test passed", flush=True)


if __name__ == "__main__":
    main()
