"""The explain page in a real browser (headless Chromium driven by playwright), opened from disk.

No console errors, no network requests, the numbers in the DOM equal ``explain --json``, screenshots at
1280 px and 390 px are not blank, keyboard navigation moves between the layers, print hides the navigation.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
INSTALL = ("install Chromium (Debian/Ubuntu: apt-get install chromium) and the playwright package "
           "(pip install 'cnnspec[test]' or pip install playwright); playwright's own browser download is not needed")

sync_api = pytest.importorskip("playwright.sync_api", reason=f"playwright is not installed: {INSTALL}")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=f"no chromium executable on PATH: {INSTALL}")

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]

PAGES = [("mnist_convnet", "en"), ("mnist_convnet", "ko"), ("same_stride2", "en"), ("same_stride2", "ko"),
         ("autoencoder", "en"), ("mobile_block", "en"), ("signal_1d", "en"), ("volume_3d", "ko")]


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """(html path, the --json object) per seed page, both written by the real command line."""
    folder = tmp_path_factory.mktemp("pages")
    made = {}
    for name, lang in PAGES:
        out = folder / f"{name}.{lang}.html"
        spec = str(EXAMPLES / f"{name}.yaml")
        run = [sys.executable, "-m", "cnnspec", "explain", spec, "--lang", lang]
        subprocess.run(run + ["--html", str(out)], check=True, cwd=ROOT, capture_output=True, timeout=120)
        data = json.loads(subprocess.run(run + ["--json"], check=True, cwd=ROOT, capture_output=True, text=True,
                                         timeout=120).stdout)
        made[name, lang] = (out, data)
    return made


def open_page(browser, path: Path, width: int):
    page = browser.new_page(viewport={"width": width, "height": 900})
    problems, requests = [], []
    page.on("console", lambda message: problems.append(message.text) if message.type in ("error", "warning") else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("request", lambda request: requests.append(request.url))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, problems, requests


def pixel_spread(browser, png: bytes) -> tuple[float, int]:
    """(variance of the grey levels, number of distinct colours) of a PNG, measured by the browser's canvas."""
    page = browser.new_page()
    try:
        return tuple(page.evaluate(
            """async (data) => {
                const image = new Image();
                image.src = 'data:image/png;base64,' + data;
                await image.decode();
                const canvas = document.createElement('canvas');
                canvas.width = image.width; canvas.height = image.height;
                const context = canvas.getContext('2d');
                context.drawImage(image, 0, 0);
                const pixels = context.getImageData(0, 0, image.width, image.height).data;
                let sum = 0, squares = 0, n = 0; const colours = new Set();
                for (let i = 0; i < pixels.length; i += 4) {
                    const grey = (pixels[i] + pixels[i + 1] + pixels[i + 2]) / 3;
                    sum += grey; squares += grey * grey; n += 1;
                    if (colours.size < 5000) colours.add(pixels[i] << 16 | pixels[i + 1] << 8 | pixels[i + 2]);
                }
                const mean = sum / n;
                return [squares / n - mean * mean, colours.size];
            }""",
            base64.b64encode(png).decode(),
        ))
    finally:
        page.close()


@pytest.mark.parametrize("name,lang", PAGES, ids=[f"{n}-{l}" for n, l in PAGES])
def test_page_loads_without_errors_or_network(browser, pages, name, lang):
    path, _ = pages[name, lang]
    page, problems, requests = open_page(browser, path, 1280)
    assert problems == []
    assert requests == [path.as_uri()]  # the file itself, nothing else
    assert page.evaluate("document.documentElement.lang") == lang
    page.close()


@pytest.mark.parametrize("name,lang", PAGES, ids=[f"{n}-{l}" for n, l in PAGES])
def test_numbers_in_the_dom_equal_explain_json(browser, pages, name, lang):
    path, data = pages[name, lang]
    page, _, _ = open_page(browser, path, 1280)
    cards = page.evaluate("""() => Array.from(document.querySelectorAll('section.layer')).map(s => ({
        name: s.dataset.name, params: +s.dataset.params, trainable: +s.dataset.trainable,
        nonTrainable: +s.dataset.nonTrainable, nchw: s.dataset.nchw, nhwc: s.dataset.nhwc,
        shown: s.querySelector('.params').textContent,
        first: s.querySelector('.numbers[data-layout=NCHW]').textContent,
        last: s.querySelector('.numbers[data-layout=NHWC]').textContent,
        formulas: Array.from(s.querySelectorAll('.formula')).map(f => f.textContent)}))""")
    assert [c["name"] for c in cards] == [layer["name"] for layer in data["layers"]]
    for card, layer in zip(cards, data["layers"]):
        first = "×".join(map(str, layer["output_shape"]["NCHW"]))
        last = "×".join(map(str, layer["output_shape"]["NHWC"]))
        assert (card["params"], card["trainable"], card["nonTrainable"]) == (
            layer["params"], layer["trainable_params"], layer["non_trainable_params"])
        assert card["shown"] == f"{layer['params']:,}"
        assert (card["nchw"], card["nhwc"], card["first"], card["last"]) == (first, last, first, last)
        expected = [g["text"] for g in layer["padding_text"] + layer["size"]]
        expected += [layer["param_formula"]] if layer["param_formula"] else []
        if "flatten_order" in layer:
            expected += [layer["flatten_order"]["torch_formula"], layer["flatten_order"]["keras_formula"]]
        assert card["formulas"] == expected
    totals = page.evaluate("() => Object.assign({}, document.getElementById('totals').dataset)")
    assert (int(totals["total"]), int(totals["trainable"]), int(totals["nonTrainable"])) == (
        data["total_params"], data["trainable_params"], data["non_trainable_params"])
    notes = page.evaluate("() => Array.from(document.querySelectorAll('.notes li')).map(li => li.textContent)")
    assert notes == [note["text"] for note in data["notes"]]
    page.close()


@pytest.mark.parametrize("name,lang", [("mnist_convnet", "en"), ("same_stride2", "ko"), ("mobile_block", "en")])
@pytest.mark.parametrize("width", [1280, 390])
def test_screenshots_are_not_blank_and_fit_the_width(browser, pages, name, lang, width, tmp_path):
    path, _ = pages[name, lang]
    page, problems, _ = open_page(browser, path, width)
    assert page.evaluate("document.documentElement.scrollWidth") <= width  # nothing wider than the screen
    for target in ("top", "#layer-0"):
        if target != "top":
            page.locator(target).scroll_into_view_if_needed()
        png = page.screenshot()
        (tmp_path / f"{name}.{lang}.{width}.{target.strip('#')}.png").write_bytes(png)
        variance, colours = pixel_spread(browser, png)
        assert variance > 100 and colours > 20, (variance, colours)
    assert problems == []
    page.close()


def test_a_blank_screenshot_fails_the_check(browser):
    """Negative control for the screenshot check."""
    page = browser.new_page(viewport={"width": 390, "height": 300})
    page.set_content("<html><body style='background:#fff'></body></html>")
    variance, colours = pixel_spread(browser, page.screenshot())
    assert variance < 1 and colours <= 2
    page.close()


def test_keyboard_moves_between_layers(browser, pages):
    path, data = pages["mnist_convnet", "en"]
    page, _, _ = open_page(browser, path, 1280)
    focused = "() => document.activeElement.id"
    page.keyboard.press("j")
    assert page.evaluate(focused) == "layer-0"
    page.keyboard.press("j")
    page.keyboard.press("ArrowDown")
    assert page.evaluate(focused) == "layer-2"
    page.keyboard.press("k")
    assert page.evaluate(focused) == "layer-1"
    page.keyboard.press("End")
    assert page.evaluate(focused) == f"layer-{len(data['layers']) - 1}"
    page.keyboard.press("Home")
    assert page.evaluate(focused) == "layer-0"
    page.keyboard.press("Tab")  # Tab reaches the next card (cards are in the tab order)
    assert page.evaluate(focused) == "layer-1"
    page.locator("nav.toc a").nth(3).click()
    assert page.evaluate(focused) == "layer-3"
    page.close()


def test_print_layout_hides_navigation(browser, pages):
    path, _ = pages["same_stride2", "en"]
    page, _, _ = open_page(browser, path, 1280)
    page.emulate_media(media="print")
    assert page.evaluate("getComputedStyle(document.querySelector('nav.toc')).display") == "none"
    assert page.evaluate("getComputedStyle(document.querySelector('section.layer')).breakInside") == "avoid"
    page.close()


def test_same_stride2_picture_puts_the_extra_cell_at_the_end(browser, pages):
    """In the 'same' grid the first window starts on real cells and the padded row/column is at the end;
    in the padding=1 comparison the first window starts on a padded cell."""
    path, _ = pages["same_stride2", "en"]
    page, _, _ = open_page(browser, path, 1280)
    result = page.evaluate("""() => {
        const figures = document.querySelectorAll('#layer-0 .pictures figure');
        const describe = (figure) => {
            const svg = figure.querySelector('svg');
            const at = (r) => [+r.getAttribute('x'), +r.getAttribute('y')];
            const pads = Array.from(svg.querySelectorAll('rect.cell.pad')).map(at);
            const cells = Array.from(svg.querySelectorAll('rect.cell')).map(at);
            const minX = Math.min(...cells.map(c => c[0])), minY = Math.min(...cells.map(c => c[1]));
            const maxX = Math.max(...cells.map(c => c[0])), maxY = Math.max(...cells.map(c => c[1]));
            return {padAtStart: pads.some(p => p[0] === minX && p[1] === minY),
                    padAtEnd: pads.some(p => p[0] === maxX && p[1] === maxY)};
        };
        return Array.from(figures).map(describe);
    }""")
    same, torch_padding = result
    assert same == {"padAtStart": False, "padAtEnd": True}
    assert torch_padding == {"padAtStart": True, "padAtEnd": True}
    page.close()
