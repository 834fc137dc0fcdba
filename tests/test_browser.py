"""The pages of a real run, rendered by a real headless Chromium at desktop (1400 px) and phone
(420 px) widths, in English and Chinese: the model page and the full report render, no table is
clipped (wide ones scroll in their own box) and the page never scrolls sideways, every contents
link has its target, plots are embedded images, every character on the page has a font that draws
it, and no cell shows an error."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from report_run_fixture import real_run

pytestmark = pytest.mark.e2e

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                  "--allow-file-access-from-files"]

# Measures the laid-out page and writes the result into the page, where --dump-dom reads it.
PROBE = """<pre id="layout-probe"></pre><script>
window.addEventListener('load', () => {
  const tables = [...document.querySelectorAll('table')];
  const ids = new Set([...document.querySelectorAll('[id]')].map(e => e.id));
  const r = {
    width: window.innerWidth,
    page_scroll_width: document.documentElement.scrollWidth,
    tables: tables.length,
    clipped_tables: tables.filter(t => t.scrollWidth > t.clientWidth + 1
                                  && getComputedStyle(t).overflowX === 'visible').length,
    scrolling_tables: tables.filter(t => t.scrollWidth > t.clientWidth + 1).length,
    contents_links: document.querySelectorAll('a[href^="#"]').length,
    broken_links: [...document.querySelectorAll('a[href^="#"]')].map(a => a.getAttribute('href').slice(1))
                   .filter(h => !ids.has(h)),
    broken_images: [...document.images].filter(i => !i.complete || i.naturalWidth === 0).length,
  };
  // inside the phone-width frame the result goes to the page holding the frame
  const out = (window.parent !== window && window.parent.document.getElementById('layout-probe'))
              || document.getElementById('layout-probe');
  out.textContent = JSON.stringify(r);
});
</script>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no Chromium on this host: install it with `apt-get install -y chromium` "
                "(scripts/install_test_deps.sh does it)")


class _Dom(HTMLParser):
    """Images, tables, the h1 text and the visible text of a dumped DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[dict[str, str]] = []
        self.tables = 0
        self.h1: list[str] = []
        self.text: list[str] = []
        self._stack: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.imgs.append(dict(attrs))
        elif tag == "table":
            self.tables += 1
        if tag not in ("img", "br", "meta", "link", "hr", "input"):
            self._stack.append(tag)

    def handle_endtag(self, tag):
        if tag in self._stack:
            while self._stack and self._stack.pop() != tag:
                pass

    def handle_data(self, data):
        if "h1" in self._stack:
            self.h1.append(data)
        if not {"script", "style", "title"} & set(self._stack):
            self.text.append(data)


def _render(page: Path, tmp_path: Path, width: int) -> tuple[str, dict]:
    """The page's DOM after layout at `width` px, and what the probe measured there. Chromium's
    window is at least 500 px wide, so the page is laid out in a frame of exactly `width` px (its
    own viewport: media queries and innerWidth see the phone width)."""
    probed = tmp_path / f"{page.stem}.{width}.probe.html"
    probed.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    holder = tmp_path / f"{page.stem}.{width}.frame.html"
    holder.write_text(f'<!DOCTYPE html><html><body style="margin:0"><pre id="layout-probe"></pre>'
                      f'<iframe src="{probed.name}" style="width:{width}px;height:2000px;border:0"></iframe>'
                      f'</body></html>', encoding="utf-8")
    base = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,2100"]
    dom = subprocess.run([*base, "--virtual-time-budget=8000", "--dump-dom", holder.as_uri()],
                         capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'<pre id="layout-probe">(.*?)</pre>', dom.stdout, re.S)
    assert found and found.group(1), "the layout probe did not run"
    return probed.read_text(encoding="utf-8"), json.loads(found.group(1))


def _uncovered(text: str) -> list[str]:
    """Characters of `text` that no installed font has (fontconfig's charset query)."""
    if not shutil.which("fc-list"):
        pytest.skip("no fontconfig (fc-list) on this host")
    chars = sorted({c for c in text if ord(c) > 0x7E and not c.isspace()})
    return [c for c in chars
            if not subprocess.run(["fc-list", f":charset={ord(c):x}", "family"], capture_output=True,
                                  text=True, timeout=30).stdout.strip()]


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """The real run's pages in English (as written by the run) and Chinese (re-rendered from the
    same records with `ascendeval report --lang zh`)."""
    _, run_dir, _ = real_run(tmp_path_factory)
    zh_dir = tmp_path_factory.mktemp("zh") / run_dir.name
    shutil.copytree(run_dir, zh_dir)
    from conftest import run_cli

    out = run_cli(["report", str(zh_dir), "--lang", "zh"], zh_dir.parent)
    assert out.returncode == 0, out.stderr
    return {"en": run_dir, "zh": zh_dir}


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("width", [1400, 420])
@pytest.mark.parametrize("name", ["README.html", "report.html"])
def test_pages_at_desktop_and_phone_widths(pages, tmp_path, lang, width, name):
    dom, probe = _render(pages[lang] / name, tmp_path, width)
    assert probe["width"] == width
    assert probe["page_scroll_width"] <= width, probe  # the page never scrolls sideways
    assert probe["clipped_tables"] == 0, probe  # a wide table scrolls inside its own box
    assert probe["broken_links"] == [], probe  # every contents link lands on its part
    assert probe["broken_images"] == 0, probe
    parser = _Dom()
    parser.feed(dom)
    text = "".join(parser.text)
    assert _uncovered(text) == []  # no character drawn as an empty box
    assert "Traceback (most recent call last)" not in dom and "An Exception was encountered" not in dom
    if name == "report.html":
        assert probe["contents_links"] >= 10 and parser.tables >= 5
        title = "".join(parser.h1)
        assert ("evaluation report" if lang == "en" else "测评报告") in title
    else:
        assert ("Key figures" if lang == "en" else "关键数据") in text and "report.html" in dom


def test_single_file_report_embeds_everything(pages, tmp_path):
    run_dir = pages["en"]
    dom, _ = _render(run_dir / "report.html", tmp_path, 1400)
    parser = _Dom()
    parser.feed(dom)
    data_imgs = [i for i in parser.imgs if i.get("src", "").startswith("data:image/png;base64,")]
    assert len(data_imgs) >= 2, [i.get("src", "")[:40] for i in parser.imgs]  # report plots, embedded
    assert all(len(i["src"]) > 2000 for i in data_imgs)  # real image data, not an empty placeholder
    assert not [i for i in parser.imgs if not i.get("src", "").startswith("data:")]  # nothing external
    # every section notebook that ran is inside the page (not the report's own: the page is the report)
    for section in ("environment", "smoke"):
        assert f'id="nb-{section}"' in dom
    assert 'id="nb-report"' not in dom
    # the verdict marks are badges with glyphs every basic font has, not emoji
    assert 'class="mark pass"' in dom and "✅" not in "".join(parser.text)
    shot = tmp_path / "shot.png"
    subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile2'}",
                    f"--screenshot={shot}", "--window-size=1400,2400", (run_dir / "report.html").as_uri()],
                   capture_output=True, text=True, timeout=180)
    assert shot.is_file() and shot.stat().st_size > 10_000  # a real rendering, not a blank page
