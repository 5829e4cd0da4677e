"""``spamlearn eval --report DIR``: the files it writes, and the page opened in a real,
headless Chromium served over loopback HTTP -- no console errors, every picture loaded."""

from __future__ import annotations

import functools
import html
import json
import re
import shutil
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import matplotlib.image
import pytest

from spamlearn.report import CAPTIONS, FIGURE_FILES

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: Enough of the corpus for every picture to have something to show, in seconds.
LIMIT = 800
# Chromium logs console messages (console.error, uncaught exceptions) to
# stderr with --enable-logging=stderr as "...:INFO:CONSOLE:12] "text", source: ...".
CONSOLE_LINE = re.compile(r":CONSOLE[:(]\d+")


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if path is None:
        pytest.fail("Chromium is missing: the report test opens the page in Debian's headless chromium "
                    "(apt-get install chromium; ./scripts/test.sh installs it)")
    return path


def spamlearn(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spamlearn", *map(str, args)], capture_output=True,
                          text=True, timeout=300, **kwargs)


@pytest.fixture(scope="module")
def report(spamassassin_index, tmp_path_factory):
    """A report over the first LIMIT messages of the corpus, and the figures ``--json`` printed."""
    base = tmp_path_factory.mktemp("report")
    directory = base / "report"
    result = spamlearn("eval", "--index", spamassassin_index, "--limit", LIMIT, "--json",
                       "--report", directory, "--plot", base / "roc-plot.png")
    assert result.returncode == 0, result.stderr
    return directory, json.loads(result.stdout), base / "roc-plot.png"


class RecordingHandler(SimpleHTTPRequestHandler):
    """Serves a folder and records (path, status) of every request."""

    def __init__(self, *args, requests: list, **kwargs):
        self.requests = requests
        super().__init__(*args, **kwargs)

    def log_request(self, code="-", size="-"):
        self.requests.append((self.path, int(code)))

    def log_message(self, format, *args):  # keep pytest's output clean
        pass


class LoopbackServer:
    """A static HTTP server for ``directory`` on 127.0.0.1, on a free port."""

    def __init__(self, directory: Path):
        self.requests: list[tuple[str, int]] = []
        handler = functools.partial(RecordingHandler, directory=str(directory), requests=self.requests)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{path}"

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


def open_page(chromium: str, url: str, profile: Path) -> tuple[str, list[str]]:
    """The DOM after the page's load event, and the console lines Chromium logged."""
    result = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
         "--dump-dom", url],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"chromium failed ({result.returncode}): {result.stderr[-2000:]}"
    return result.stdout, [line for line in result.stderr.splitlines() if CONSOLE_LINE.search(line)]


def body_attribute(dom: str, name: str) -> str | None:
    match = re.search(rf'<body[^>]*\s{name}="([^"]*)"', dom)
    return match.group(1) if match else None


def test_report_writes_every_picture_and_the_figures_table(report):
    directory, figures, plot = report
    assert sorted(p.name for p in directory.iterdir()) == sorted([*FIGURE_FILES.values(), "index.html"])
    for name in FIGURE_FILES.values():
        path = directory / name
        assert path.read_bytes()[:8] == PNG_MAGIC, name
        height, width, _ = matplotlib.image.imread(path).shape
        assert width >= 600 and height >= 400, (name, width, height)
    page = (directory / "index.html").read_text(encoding="utf-8")
    for key, fmt in (("roca_pct", "{:.4f}"), ("lam_pct", "{:.3f}"), ("unsure_pct", "{:.2f}")):
        assert f'<td class="number">{fmt.format(figures[key])}</td>' in page, key
    assert f'<td class="number">{LIMIT}</td>' in page
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert sorted(srcs) == sorted(FIGURE_FILES.values())
    for caption in CAPTIONS.values():
        assert html.escape(caption) in page
    # Self-contained: nothing fetched from elsewhere.
    assert not re.search(r'(?:src|href)="(?:https?:)?//', page)
    # --plot draws the same ROC picture as the report (same data, same size).
    assert plot.read_bytes()[:8] == PNG_MAGIC
    assert matplotlib.image.imread(plot).shape == matplotlib.image.imread(directory / "roc.png").shape


def test_report_page_opens_in_headless_chromium_with_every_picture_loaded(report, chromium, tmp_path):
    directory, _, _ = report
    with LoopbackServer(directory) as server:
        dom, console = open_page(chromium, server.url("index.html"), tmp_path / "profile")
    assert console == [], console
    assert body_attribute(dom, "data-images-loaded") == str(len(FIGURE_FILES)), dom[:500]
    assert body_attribute(dom, "data-images-failed") == "0"
    assert sorted(server.requests) == sorted([("/index.html", 200)] +
                                             [(f"/{name}", 200) for name in FIGURE_FILES.values()])


def test_the_browser_check_catches_a_broken_page(report, chromium, tmp_path):
    """The check above can fail: a missing picture and a script error are both seen."""
    directory, _, _ = report
    broken = tmp_path / "broken"
    shutil.copytree(directory, broken)
    page = (broken / "index.html").read_text(encoding="utf-8")
    page = page.replace('src="scores.png"', 'src="missing.png"')
    page = page.replace("</body>", "<script>undefinedFunction();</script></body>")
    (broken / "index.html").write_text(page, encoding="utf-8")
    with LoopbackServer(broken) as server:
        dom, console = open_page(chromium, server.url("index.html"), tmp_path / "profile")
    assert any("undefinedFunction" in line for line in console), console
    assert body_attribute(dom, "data-images-loaded") == str(len(FIGURE_FILES) - 1)
    assert body_attribute(dom, "data-images-failed") == "1"
    assert ("/missing.png", 404) in server.requests


def test_report_into_a_path_that_is_a_file_is_a_one_line_error(spamassassin_index, tmp_path):
    target = tmp_path / "not-a-folder"
    target.write_text("x")
    result = spamlearn("eval", "--index", spamassassin_index, "--limit", 50, "--report", target)
    assert result.returncode == 2       # refused before the run, as a bad option
    assert "not a folder" in result.stderr
    assert result.stderr.startswith("spamlearn: error: ") and len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.stderr
