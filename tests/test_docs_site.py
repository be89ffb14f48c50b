"""The docs site builds in strict mode and its formulas render offline.

The build runs every chapter script, so it is long: with ``PYROVAE_SITE_DIR`` pointing at a
site that ``mkdocs build --strict`` just wrote (as CI does), these tests check that site and
are quick; without it they build the site themselves with every script at its smallest
settings (``PYROVAE_COURSE_QUICK=1``) and are marked slow.
"""

import functools
import http.server
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILT = os.environ.get("PYROVAE_SITE_DIR")
DOCS_PACKAGES = ("mkdocs", "material", "mkdocstrings", "mathjax")
MISSING = [name for name in DOCS_PACKAGES if importlib.util.find_spec(name) is None]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MATH_PAGES = ["course/1_elbo.html", "course/4_amortized_inference.html", "marginal_likelihood.html"]

pytestmark = [pytest.mark.skipif(bool(MISSING) and not BUILT,
                                 reason=f"docs packages missing ({', '.join(MISSING)}): "
                                        f"python3 -m pip install -e '.[docs]'")]
if not BUILT:
    pytestmark.append(pytest.mark.slow)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The built site: ``PYROVAE_SITE_DIR``, or a strict quick build made here."""
    if BUILT:
        return Path(BUILT)
    folder = tmp_path_factory.mktemp("site")
    env = {**os.environ, "PYROVAE_COURSE_QUICK": "1", "PYROVAE_COURSE_CACHE": str(folder / "cache"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(folder / "site")],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"strict build failed:\n{done.stderr[-6000:]}"
    return folder / "site"


def test_strict_build_has_every_page_figure_and_mathjax(site):
    for page in ["index.html", "api.html", "site.html", *MATH_PAGES,
                 *[f"course/{p.stem}.html" for p in (ROOT / "docs" / "course").glob("*.md")]]:
        assert (site / page).is_file(), page
    assert (site / "assets" / "mathjax" / "tex-chtml.js").is_file()
    assert list((site / "assets" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))
    for page in (site / "course").glob("*.html"):
        for figure in re.findall(r'<img[^>]+src="([^"]+)"', page.read_text()):
            assert (page.parent / figure).resolve().is_file(), f"{page.name}: {figure}"


def _is_quick(site):
    return 'class="admonition quick-build"' in (site / "index.html").read_text()


def test_a_quick_build_says_so_on_every_page_and_every_course_figure(site):
    """Either every page carries the quick build's banner and every chapter figure its mark,
    or none does; the site built here (at quick settings) does."""
    from PIL import Image

    quick = _is_quick(site)
    if not BUILT:
        assert quick
    for page in site.rglob("*.html"):
        if page.parent.name in ("assets", "search") or page.name == "404.html":
            continue
        assert ('class="admonition quick-build"' in page.read_text()) == quick, page.relative_to(site)
    figures = [p for p in (site / "generated").glob("ch*/*.png")]
    assert len(figures) > 15
    for figure in figures:
        assert (Image.open(figure).text.get("pyrovae-course-build") == "quick") == quick, figure.relative_to(site)


def test_no_page_loads_anything_from_the_network(site):
    remote = re.compile(r'<(?:script|link|img)[^>]+(?:src|href)="(?:https?:)?//', re.IGNORECASE)
    for page in site.rglob("*.html"):
        assert not remote.search(page.read_text()), f"{page.relative_to(site)} loads a remote asset"


def test_api_reference_is_rendered_from_docstrings(site):
    text = (site / "api.html").read_text()
    assert "pyrovae.evaluation.references" in text
    assert "quadrature_log_marginal" in text
    assert "numerical integration over a 1-D or 2-D latent space" in text


def test_api_reference_turns_the_docstrings_roles_into_links(site):
    text = (site / "api.html").read_text()
    assert not re.search(r":(class|func|meth|mod|attr|data|exc):`", text), "a Sphinx role left as text"
    links = re.findall(r'<a class="autorefs autorefs-internal"[^>]*href="#([\w.]+)"', text)
    assert len(links) > 100
    assert "pyrovae.api.Run" in links
    anchors = set(re.findall(r'id="([\w.]+)"', text))
    assert set(links) <= anchors


MEASURE_PAGE = """<!doctype html><html><body><pre id="out">waiting</pre><script>
const pages = %s, wide = []; let done = 0;
for (const page of pages) {
  const frame = document.createElement("iframe");
  frame.style.width = "1280px"; frame.style.height = "900px"; frame.src = page;
  frame.onload = () => setTimeout(() => {
    frame.contentDocument.querySelectorAll("div.arithmatex").forEach((e) => {
      if (e.scrollWidth > e.clientWidth + 1) wide.push(page + ": " + e.textContent.slice(0, 50));
    });
    if (++done === pages.length) document.getElementById("out").textContent = "MEASURED " + JSON.stringify(wide);
  }, 8000);
  document.body.appendChild(frame);
}
</script></body></html>"""


class _SiteHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the site, and at ``/__measure.html`` a page that loads the course's chapters in
    1280-pixel frames and lists every display formula wider than its column."""

    def do_GET(self):
        if self.path != "/__measure.html":
            return super().do_GET()
        pages = sorted(f"course/{p.stem}.html" for p in (ROOT / "docs" / "course").glob("[0-9]_*.md"))
        body = (MEASURE_PAGE % json.dumps(pages)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def served(site):
    """The site over HTTP on the loopback interface, as a browser reads it."""
    handler = functools.partial(_SiteHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.log_message = lambda *args: None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian: apt-get install chromium)")
@pytest.mark.parametrize("page", MATH_PAGES)
def test_math_is_typeset_by_mathjax_in_headless_chromium(served, site, page, tmp_path):
    written = (site / page).read_text().count('class="arithmatex"')
    assert written > 5
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path}",
         "--virtual-time-budget=20000", "--dump-dom", f"{served}/{page}"],
        capture_output=True, text=True, timeout=180)
    dom = done.stdout
    typeset = dom.count("<mjx-container")
    assert typeset >= written, f"{page}: {typeset} of {written} formulas typeset"
    assert "<mjx-merror" not in dom, f"{page}: MathJax reports a TeX error"
    assert "\\(" not in re.sub(r"<(script|code|pre)[\s\S]*?</\1>", "", dom), f"{page}: raw TeX left on the page"


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian: apt-get install chromium)")
def test_search_works_when_the_site_is_opened_from_the_file_system(site, tmp_path):
    """Opened as file://, a query (``?q=`` opens the search box with it) lists matching pages:
    the inlined index was read and the worker, run by the site's own shim, answered."""
    assert (site / "search" / "search_index.js").read_text().startswith("var __index = {")
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path}",
         "--virtual-time-budget=20000", "--dump-dom", f"{(site / 'index.html').resolve().as_uri()}?q=amortized"],
        capture_output=True, text=True, timeout=180)
    results = re.findall(r'<a href="([^"]+)" class="md-search-result__link"', done.stdout)
    assert any("course/4_amortized_inference.html" in href for href in results), results[:5]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian: apt-get install chromium)")
def test_no_display_formula_of_the_course_is_wider_than_its_column(served, tmp_path):
    """In a 1280-pixel window every typeset display formula fits the text column (one that
    did not would scroll sideways)."""
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path}",
         "--window-size=1400,1000", "--virtual-time-budget=40000", "--dump-dom", f"{served}/__measure.html"],
        capture_output=True, text=True, timeout=240)
    found = re.search(r"MEASURED (\[.*?\])</pre>", done.stdout.replace("&quot;", '"'))
    assert found, done.stdout[-2000:]
    assert json.loads(found.group(1)) == []
