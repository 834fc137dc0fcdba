"""The single-file HTML of a real run, rendered by a real headless Chromium: the page renders, the
plots are <img> elements with image data, and no cell shows an error."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from report_run_fixture import real_run

pytestmark = pytest.mark.e2e

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no Chromium on this host: install it with `apt-get install -y chromium` "
                "(scripts/install_test_deps.sh does it)")


class _Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[dict[str, str]] = []
        self.tables = 0
        self.h1: list[str] = []
        self._in_h1 = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a)
        elif tag == "table":
            self.tables += 1
        elif tag == "h1":
            self._in_h1 = True

    def handle_endtag(self, tag):
        if tag == "h1":
            self._in_h1 = False

    def handle_data(self, data):
        if self._in_h1:
            self.h1.append(data)


def _render(page: Path, tmp_path: Path) -> tuple[str, Path]:
    exe = chromium()
    shot = tmp_path / "shot.png"
    base = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*base, "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    subprocess.run([*base, f"--screenshot={shot}", "--window-size=1200,2400", page.as_uri()],
                   capture_output=True, text=True, timeout=180)
    return dom.stdout, shot


def test_single_file_report_renders_in_chromium(tmp_path_factory, tmp_path):
    _, run_dir, _ = real_run(tmp_path_factory)
    page = run_dir / "report.html"
    assert page.is_file()
    dom, shot = _render(page, tmp_path)
    parser = _Dom()
    parser.feed(dom)
    assert "evaluation report" in "".join(parser.h1)  # the card's title, as rendered
    assert parser.tables >= 5  # verdicts, model, environment, smoke, timing ...
    data_imgs = [i for i in parser.imgs if i.get("src", "").startswith("data:image/png;base64,")]
    assert len(data_imgs) >= 2, [i.get("src", "")[:40] for i in parser.imgs]  # report plots, embedded
    assert all(len(i["src"]) > 2000 for i in data_imgs)  # real image data, not an empty placeholder
    assert not [i for i in parser.imgs if not i.get("src", "").startswith("data:")]  # nothing external
    # every section notebook that ran is inside the page, with no error output
    for section in ("00_environment", "01_smoke", "06_report"):
        assert f'id="nb-{section.split("_", 1)[1]}"' in dom
    assert "Traceback (most recent call last)" not in dom  # IPython error outputs carry this line
    assert "An Exception was encountered" not in dom  # papermill's banner over a failed cell
    assert shot.is_file() and shot.stat().st_size > 10_000  # a real rendering, not a blank page


def test_card_html_renders_in_chromium(tmp_path_factory, tmp_path):
    _, run_dir, _ = real_run(tmp_path_factory)
    dom, _ = _render(run_dir / "README.html", tmp_path)
    parser = _Dom()
    parser.feed(dom)
    assert any(i.get("src", "").startswith("data:image/png;base64,") for i in parser.imgs)
    assert "records/smoke.json" in dom  # traceability links survive the rendering
