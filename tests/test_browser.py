"""The trade-off chart in a real browser: a tiny Jupyter Book built offline, opened in Chromium.

The book runs a page that reads real smoke records and embeds the charts with vitcf.plots.embed
(the book loads vitcf.plots as a Sphinx extension, which serves the local Vega bundle). Chromium
then checks that the charts draw with no network and no console error, and that moving the w slider
re-ranks the methods exactly as vitcf.plots.rank_methods does.
"""

import contextlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from vitcf import plots
from vitcf.records import read_records, records_frame
from vitcf.study import run

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (Debian package 'chromium')")

CONFIG = """\
title: vitcf plots demo
author: vitcf tests
only_build_toc_files: true
execute:
  execute_notebooks: force
  timeout: 300
sphinx:
  extra_extensions: [vitcf.plots]
  config:
    nb_merge_streams: true
"""

TOC = """\
format: jb-book
root: intro
chapters:
  - file: tradeoff
"""

PAGE = """\
---
jupytext:
  text_representation:
    format_name: myst
kernelspec:
  name: python3
  display_name: Python 3
---

# Learning and forgetting

```{{code-cell}} ipython3
from vitcf.plots import embed, forgetting_curve_chart, tradeoff_chart
from vitcf.records import read_records, records_frame

runs = read_records({records!r})
embed(tradeoff_chart(records_frame(runs)))
```

```{{code-cell}} ipython3
embed(forgetting_curve_chart(runs))
```
"""

MOVE_SLIDER = "(el, v) => { el.value = v; el.dispatchEvent(new Event('input', {bubbles: true})); }"

# The ranking view as drawn: its y-axis labels and score texts, each with its position. Vega's SVG
# renderer moves existing nodes when the order changes, so document order is not display order.
READ_RANKING = """el => {
  const group = el.querySelector('g.ranking_group');
  const read = selector => [...group.querySelectorAll(selector)].map(t => [t.textContent, t.getAttribute('transform')]);
  return {axis: read('g.role-axis-label text'), scores: read('g[class*="ranking_scores"] text')};
}"""


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    """Three smoke records (LoRA with two seeds, one probed during training; linear) and the built book."""
    root = tmp_path_factory.mktemp("browser")
    records = root / "records"
    run("smoke", "lora", {"r": 8}, seed=0, results_dir=records, progress=False, forgetting_steps=(0, 3, 6))
    run("smoke", "lora", {"r": 8}, seed=1, results_dir=records, progress=False)
    run("smoke", "linear", {}, seed=0, results_dir=records, progress=False, forgetting_steps=(0, 3, 6))  # 2 curves
    source = root / "book"
    source.mkdir()
    (source / "_config.yml").write_text(CONFIG)
    (source / "_toc.yml").write_text(TOC)
    (source / "intro.md").write_text("# Demo\n\nA page with no chart.\n")
    (source / "tradeoff.md").write_text(PAGE.format(records=str(records)))
    jupyter_book = Path(sys.executable).with_name("jupyter-book")  # the venv's, never a `jupyter book` (v2)
    assert jupyter_book.exists(), f"no {jupyter_book}: install the book extra (jupyter-book>=1.0.4,<2)"
    build = subprocess.run([str(jupyter_book), "build", str(source), "-W", "-n", "--keep-going"],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    return source / "_build" / "html", records_frame(read_records(records))


def top_to_bottom(items) -> list[str]:
    """The texts of (text, 'translate(x,y)') pairs, ordered by y."""
    def height(item):
        return float(re.search(r"translate\([-\d.]+,([-\d.]+)\)", item[1])[1])

    return [text for text, _ in sorted(items, key=height)]


def displayed(chart, labels) -> list[tuple[str, str]]:
    """(label, score text) of the ranking bars, top to bottom, as the browser drew them."""
    drawn = chart.evaluate(READ_RANKING)
    axis = top_to_bottom([item for item in drawn["axis"] if item[0] in labels])  # the x axis has numbers
    scores = top_to_bottom(drawn["scores"])
    assert len(axis) == len(scores)
    return list(zip(axis, scores))


def expected(frame, w) -> list[tuple[str, str]]:
    return [(row.label, f"{row.score:.1f}") for row in plots.rank_methods(frame, w).itertuples()]


def same_ranking(shown, wanted) -> bool:
    """Equal up to the order of tied scores (Vega and pandas may break ties differently)."""
    return sorted(shown) == sorted(wanted) and [s for _, s in shown] == [s for _, s in wanted]


def listen(page, requests: list) -> list:
    """Collect the page's requests into `requests`; return the list its console errors go to."""
    errors = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def console_errors(browser, path: Path) -> list:
    page = browser.new_page()
    errors = listen(page, [])
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    page.close()
    return errors


@contextlib.contextmanager
def redrawn(page, chart):
    """Wait, after the block, until the chart's SVG differs from what it was before the block."""
    before = chart.locator("svg.marks").inner_html()
    yield
    page.wait_for_function("([el, old]) => el.querySelector('svg.marks').innerHTML !== old",
                           arg=[chart.element_handle(), before], timeout=10_000)


def test_charts_render_offline_and_the_slider_reranks(book):
    from playwright.sync_api import sync_playwright

    html, frame = book
    labels = set(frame["label"])
    page_file = html / "tradeoff.html"
    text = page_file.read_text()
    assert f'defer="defer" src="_static/{plots.BUNDLE_NAME}' in text  # loaded where a chart is, and only there
    assert plots.BUNDLE_NAME not in (html / "intro.html").read_text()
    assert (html / "_static" / plots.BUNDLE_NAME).stat().st_size > 500_000
    assert "require.js" not in text and "cdn." not in text
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            # The theme logs errors of its own on every page (JB1 declares THEBE_JS_URL twice, the
            # theme warns of its colour mode): what the charts add is measured against a page without.
            theme_errors = console_errors(browser, html / "intro.html")
            page, requests = browser.new_page(), []
            errors = listen(page, requests)
            page.goto(page_file.as_uri())
            page.wait_for_selector(f".{plots.CHART_CLASS} svg.marks g.ranking_group", state="attached", timeout=20_000)
            tradeoff, curve = page.locator(f"div.{plots.CHART_CLASS}").all()
            curve.locator("svg.marks").wait_for(timeout=20_000)
            assert same_ranking(displayed(tradeoff, labels), expected(frame, 0.5))

            slider = tradeoff.locator(f'input[type="range"][name="{plots.WEIGHT_PARAM}"]')
            for w in ("1", "0"):
                with redrawn(page, tradeoff):
                    slider.evaluate(MOVE_SLIDER, w)
                shown = displayed(tradeoff, labels)
                assert same_ranking(shown, expected(frame, float(w))), (w, shown)
            with redrawn(page, tradeoff):
                tradeoff.locator("select").select_option(label="LoRA")
            assert [label for label, _ in displayed(tradeoff, labels)] == ["LoRA r=8"]
            with redrawn(page, curve):
                curve.locator("select").select_option("10")
        finally:
            browser.close()
    assert [e for e in errors if e not in theme_errors] == []
    remote = [url for url in requests if not url.startswith(("file://", "data:", "blob:"))]
    assert not remote, remote
