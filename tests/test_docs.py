"""The documentation site builds and renders in a real browser (headless Chromium).

Marked ``docs`` (left out of the default suite): ``bash scripts/docs.sh --check`` runs it,
after installing Debian's ``chromium`` and ``chromium-driver`` when they are missing. The site
is built with warnings as errors (incrementally when ``docs/_build`` exists), served on
127.0.0.1 and opened page by page: each renders its title and its figures, no page logs a
JavaScript error, the search page finds ``fold``. A screenshot of the index goes to
``docs/_build/screenshot.png``.
"""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "docs" / "_build" / "html"
SCREENSHOT = ROOT / "docs" / "_build" / "screenshot.png"

pytestmark = pytest.mark.docs

# (page, words its <h1> holds, least number of figures that must load)
PAGES = [
    pytest.param("index.html", "unfoldconv", 1, id="index"),
    pytest.param("guide/engine.html", "engine", 1, id="guide-engine"),
    pytest.param("api/generated/unfoldconv.unfold.html", "unfoldconv.unfold", 0, id="api-unfold"),
    pytest.param("api/generated/unfoldconv.layers.PatchEmbed.html", "PatchEmbed", 0, id="api-pe"),
    pytest.param("auto_examples/plot_unfold_fold.html", "Unfold and fold", 2, id="gallery-fold"),
    pytest.param("auto_examples/index.html", "Gallery", 5, id="gallery-index"),
]


def python_blocks(page: Path) -> list[str]:
    """The bodies of the ``.. code-block:: python`` directives of a reST page, dedented."""
    blocks, lines = [], page.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.strip() != ".. code-block:: python":
            continue
        indent = len(line) - len(line.lstrip()) + 3
        body = []
        for following in lines[i + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) < indent:
                break
            body.append(following[indent:])
        blocks.append(textwrap.dedent("\n".join(body)).strip() + "\n")
    return blocks


CURVATURE = (ROOT / "unfoldconv" / "curvature" / "__init__.py").is_file()  # once merged
CODE = [
    pytest.param(
        code,
        id=f"{page.relative_to(ROOT / 'docs').with_suffix('')}-{i}",
        marks=pytest.mark.skipif(
            page.stem == "curvature" and not CURVATURE, reason="unfoldconv.curvature not merged"
        ),
    )
    for page in sorted((ROOT / "docs").glob("**/*.rst"))
    if "_build" not in page.parts and "auto_examples" not in page.parts
    for i, code in enumerate(python_blocks(page))
]


@pytest.mark.parametrize("code", CODE)
def test_python_blocks_of_the_guide_run(code):
    """Every Python block of the hand-written pages runs (the gallery runs at build time)."""
    exec(compile(code, "<docs>", "exec"), {"__name__": "docs"})


@pytest.fixture(scope="module")
def site() -> Path:
    """Build the site (``-E``: a fresh environment, as on a fresh clone; ``-W``: a warning
    fails the build, and so this test; the gallery reruns only changed examples)."""
    command = [
        sys.executable,
        "-m",
        "sphinx",
        "-E",
        "-W",
        "--keep-going",
        "-b",
        "html",
        "docs",
        HTML,
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"docs build failed:\n{result.stdout[-3000:]}{result.stderr}"
    return HTML


@pytest.fixture(scope="module")
def server(site):
    """The built site over HTTP on a free loopback port (the search page fetches its index)."""
    handler = functools.partial(QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.fail("needs chromium and chromedriver (bash scripts/docs.sh --check installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1000", "--hide-scrollbars"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(driver_path))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def open_page(browser, url: str) -> list[dict]:
    """Load ``url``; return the console's SEVERE entries (JavaScript errors, failed loads)."""
    browser.get_log("browser")  # drop what earlier pages logged
    browser.get(url)
    wait_for(lambda: browser.execute_script("return document.readyState") == "complete")
    return [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {condition}")
        time.sleep(0.1)


@pytest.mark.parametrize(("page", "heading", "min_figures"), PAGES)
def test_page_renders(browser, server, page, heading, min_figures):
    errors = open_page(browser, f"{server}/{page}")
    assert not errors, f"{page} logged errors: {errors}"
    by = pytest.importorskip("selenium.webdriver.common.by").By
    h1 = browser.find_element(by.CSS_SELECTOR, "article h1, main h1")
    assert heading.lower() in h1.text.lower(), (page, h1.text)
    assert "unfoldconv" in browser.title, browser.title
    assert browser.find_element(by.CSS_SELECTOR, ".bd-sidebar-primary, nav").is_displayed()
    # figures: every <img> of the article has loaded (naturalWidth > 0), and enough of them
    sizes = browser.execute_script(
        "return Array.from(document.querySelectorAll('article img'))"
        ".map(img => [img.getAttribute('src'), img.complete ? img.naturalWidth : 0]);"
    )
    broken = [src for src, width in sizes if width == 0]
    assert not broken, f"{page}: images that did not load: {broken}"
    assert len(sizes) >= min_figures, f"{page}: {len(sizes)} figures, expected {min_figures}+"
    if page == "index.html":
        browser.save_screenshot(str(SCREENSHOT))
        assert SCREENSHOT.stat().st_size > 10_000


def test_search_finds_fold(browser, server):
    errors = open_page(browser, f"{server}/search.html?q=fold")
    by = pytest.importorskip("selenium.webdriver.common.by").By

    def results():
        return browser.find_elements(by.CSS_SELECTOR, "#search-results li a")

    wait_for(lambda: len(results()) > 0, timeout=30)
    titles = [link.text for link in results()]
    assert any("fold" in title.lower() for title in titles), titles
    assert any("unfoldconv.fold" in title for title in titles), titles
    errors += [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def test_no_page_loads_anything_from_the_network(site):
    """Offline site: no script, stylesheet, icon or image comes from another host (links to
    other sites are fine: they load nothing)."""
    loads = re.compile(
        r"<(?:script|img)\b[^>]*\bsrc=[\"']https?://[^>]*>"
        r"|<link\b(?=[^>]*\brel=[\"'](?:stylesheet|icon|preload|modulepreload)[\"'])"
        r"[^>]*\bhref=[\"']https?://[^>]*>"
    )
    remote = [
        f"{page.relative_to(site)}: {match.group(0)[:120]}"
        for page in sorted(site.rglob("*.html"))
        for match in loads.finditer(page.read_text(errors="replace"))
    ]
    assert not remote, remote[:10]
