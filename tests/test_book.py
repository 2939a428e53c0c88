"""The real book, built strictly on smoke records, read as HTML and driven in a real browser.

A module fixture writes smoke records for every grid point (two seeds for two of them, so spreads
are drawn) and builds this checkout's book with `jupyter-book build . -W -n --keep-going` into a
temporary folder, with VITCF_RESULTS pointing at the records and VITCF_BOOK_PRESET=smoke. The tests
check that the pages show exactly the records' numbers, then open the mini-study page in headless
Chromium (Debian's package, driven by Playwright): the charts must draw offline with no console
error, and moving the w slider must re-rank the methods exactly as vitcf.book.stats.rank_methods does.
"""

import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

from vitcf.book import (
    axis_notes,
    charts,
    curve_charts,
    curve_frames,
    evidence,
    frames,
    notes,
    pages,
    setup_notes,
    site,
    stats,
    tables,
    verdicts,
)
from vitcf.book.frames import records_frame
from vitcf.base import io
from vitcf.engine.analyses import run_analyses
from vitcf.engine.presets import get_preset
from vitcf.engine.records import read_records
from vitcf.engine.study import execute, run
from vitcf.engine.naming import grid_key, grid_keys
from vitcf.engine.sweep import plan_sweep
from vitcf.model import revert

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (Debian package 'chromium')")
# `make test` distributes by file (--dist loadfile), so one worker builds the book once for this module.
TOC_PAGES = ["book/intro", "book/methods", "book/params", "notebooks/mini_study", "notebooks/paper_scale",
             "notebooks/beyond", "notebooks/design_space", "notebooks/axes", "notebooks/discussion", "notebooks/pretrain",
             "notebooks/finetune", "book/related", "book/reproducibility"]
DESIGN_ONLY = ["surgical", "Top-1", "Top-2", "LoRA r=4 (all)"]  # the design points the fixture runs


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    """(html folder, the records' frame, the records) of the book built on fresh smoke records."""
    root = tmp_path_factory.mktemp("book")
    folder = root / "results" / "smoke"
    for point in get_preset("smoke").grid:
        run("smoke", point.method, point.hparams, seed=0, results_dir=folder, progress=False)
    for method, hparams in (("lora", {"r": 8}), ("linear", {})):
        run("smoke", method, hparams, seed=1, results_dir=folder, progress=False, forgetting_steps=())
    run_analyses("smoke", results_dir=folder, progress=False)
    core = read_records(folder)
    for design in plan_sweep("smoke", grid="design", only=DESIGN_ONLY, results_dir=folder):
        execute(design.plan, progress=False)
    for grid in ("schedule", "rates", "control"):  # seed 0: the core grid's runs stay the core pages' records
        for planned in plan_sweep("smoke", grid=grid, results_dir=folder):
            execute(planned.plan, progress=False)
    jupyter_book = Path(sys.executable).with_name("jupyter-book")  # the venv's, never a `jupyter book` (v2)
    assert jupyter_book.exists(), f"no {jupyter_book}: install the book extra (jupyter-book>=1.0.4,<2)"
    env = os.environ | {pages.RESULTS_ENV: str(root / "results"), pages.PRESET_ENV: "smoke"}
    build = subprocess.run([str(jupyter_book), "build", str(REPO), "-W", "-n", "--keep-going",
                            "--path-output", str(root / "out")], capture_output=True, text=True, timeout=1200, env=env)
    assert build.returncode == 0, build.stdout[-6000:] + build.stderr[-4000:]
    return root / "out" / "_build" / "html", records_frame(core), core


SMART_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})


def text_of(path: Path) -> str:
    """A page's article text, whitespace collapsed and Sphinx's typographic quotes made plain."""
    article = BeautifulSoup(path.read_text(), "html.parser").find("article")
    return " ".join(article.get_text(" ").split()).translate(SMART_QUOTES)


def test_every_page_is_built_and_says_which_records_it_shows(book):
    html, frame, runs = book
    for page in TOC_PAGES:
        assert (html / f"{page}.html").is_file(), page
    for page in ("mini_study", "paper_scale", "beyond", "discussion"):
        text = text_of(html / "notebooks" / f"{page}.html")
        assert f"Numbers on this page: {len(runs)} run record(s) of the smoke preset" in text
        assert "This build shows the smoke preset in place of this page" in text
        assert "No run of the" not in text


def test_the_design_page_reads_the_design_records(book):
    html, _, core = book
    folder = html.parents[2] / "results" / "smoke"
    keys = grid_keys("smoke", "design")
    design = [r for r in read_records(folder) if grid_key(r["run"]) in keys]
    frame = frames.design_frame(design)
    assert set(frame["label"]) == {"Surgical block 1", "Surgical block 7", "Surgical block 12", "Top-1", "Top-2",
                                   "Top-3", "LoRA r=4 (all)", "LoRA r=8", *(f"Block exp. p={p}" for p in range(1, 5))}
    text = text_of(html / "notebooks" / "design_space.html")
    assert f"Numbers on this page: {len(design)} run record(s) of the smoke preset" in text
    for line in notes.design_note(frame, design).splitlines():  # "- **Axis**: sentence" bullets, gaps with intervals
        assert " ".join(line.split("**: ", 1)[1].split()) in text, line
    for line in notes.design_headline(frame, design).splitlines()[2:]:  # the answer first, above the chart
        assert " ".join(line.split("**: ", 1)[1].split()) in text.split("One knob at a time")[0], line
    soup = BeautifulSoup((html / "notebooks" / "design_space.html").read_text(), "html.parser")
    assert len(soup.select(f"div.{site.CHART_CLASS}")) == 2  # the axis chart, then the trade-off plane
    mini = text_of(html / "notebooks" / "mini_study.html")
    assert " ".join(notes.early_forgetting_note(curve_frames.forgetting_curve_frame(core)).split()) in mini


def test_the_axes_page_reads_both_axes_and_shows_both_probes(book):
    html, _, _ = book
    folder = html.parents[2] / "results" / "smoke"
    found = {grid: [r for r in read_records(folder) if grid_key(r["run"]) in grid_keys("smoke", grid)]
             for grid in ("rates", "schedule")}
    for grid in ("rates", "schedule"):  # every planned run, plus the core grid's other seeds of the same points
        planned = {run.name for run in plan_sweep("smoke", grid=grid, results_dir=folder)}
        assert planned <= {r["run"] for r in found[grid]}, grid
    text = text_of(html / "notebooks" / "axes.html")
    assert f"Numbers on this page: {len(found['rates'])} run record(s) of the smoke preset" in text
    spec = get_preset("smoke")
    rates, schedule = (frames.axes_frame(found[grid], spec) for grid in ("rates", "schedule"))
    rates_note = verdicts.rates_note(verdicts.claims_by_rate(rates, found["rates"]))  # as the page: with intervals
    for note in (axis_notes.learning_note(rates), rates_note, axis_notes.schedule_note(schedule, rates),
                 setup_notes.grids_note(spec)):
        for line in note.splitlines():
            assert " ".join(line.lstrip("- ").replace("**", "").replace("*", "").replace("`", "").split()) in text, line
    for record in found["rates"] + found["schedule"]:
        assert record["run"] in text  # every run has its row
    soup = BeautifulSoup((html / "notebooks" / "axes.html").read_text(), "html.parser")
    assert len(soup.select(f"div.{site.CHART_CLASS}")) == 2  # the rate chart, then the schedule chart
    assert "linear head" in text and "k-NN probe (the paper's)" in text


def test_the_results_table_is_the_records(book):
    html, frame, core = book
    table = tables.results_table(frame)
    assert (table["seeds"] == 2).sum() == 2  # LoRA r=8 and Linear, with mean ± sd
    text = text_of(html / "notebooks" / "mini_study.html")
    for label, row in table.iterrows():
        line = " ".join([label, *map(str, row.to_list())])
        assert line in text, line
    assert "randomly initialised micro ViT" in text
    # every pair compared with intervals, corrected for the number of pairs, and each drop with its interval
    assert " ".join(notes.pairwise_note(evidence.pairwise_frame(core)).split()) in text
    baseline = io.read_json(html.parents[2] / "results" / "smoke" / "baseline.json")
    cells = tables.drop_cells(evidence.drop_table(core, baseline))
    assert cells.loc["Linear", "k-NN drop (points)"] == "0.00 [0.00, 0.00]"  # a frozen backbone: exactly nothing
    for label, row in cells.iterrows():
        assert " ".join([label, *row.to_list()]) in text, label
    assert "two-stage bootstrap" in text


def test_the_mini_page_shows_every_probe_its_range_and_the_positive_control(book):
    html, frame, core = book
    folder = html.parents[2] / "results" / "smoke"
    baseline = io.read_json(folder / "baseline.json")
    control = [r for r in read_records(folder) if grid_key(r["run"]) in grid_keys("smoke", "control")]
    assert len(control) == 2
    text = text_of(html / "notebooks" / "mini_study.html")
    controls = frames.control_frame(control)
    table = tables.results_table(frames.with_control(frame, controls))
    for label in controls["label"]:
        assert label in text and label in table.index
    assert "instance retrieval (%), k=20" in table.columns and "instance retrieval (%), k=20" in text
    for note in (notes.control_note(baseline, controls), notes.margin_headline(frame, baseline),
                 notes.ten_step_note(core, baseline=baseline)):
        for line in note.splitlines():  # Markdown's emphasis and code marks are gone once rendered
            plain = "".join(line.lstrip("- ").replace("**", "").replace("`", "").replace("*", "").split())
            assert plain in "".join(text.replace("*", "").split()), line
    levels = tables.probe_range_table(baseline, controls)
    for value in levels.loc["instance retrieval, k=20"].dropna():
        assert f"{value:.2f}".rstrip("0").rstrip(".") in text or f"{value:.2f}" in text
    soup = BeautifulSoup((html / "notebooks" / "mini_study.html").read_text(), "html.parser")
    assert soup.find(string=lambda s: s and "near" in s and "far" in s)  # the two new domains side by side


def test_the_discussion_is_written_from_the_records(book):
    html, frame, _ = book
    text = text_of(html / "notebooks" / "discussion.html")
    checks = revert.revert_checks("micro")
    paper = frames.paper_chart_frame()
    for note in (notes.linear_note(paper), notes.linear_note(frame), notes.lora_note(paper),
                 notes.lora_note(frame, checks), notes.budget_note(paper), notes.budget_note(frame),
                 notes.vit_b_budget()):
        assert " ".join(note.split()) in text, note


def test_the_analyses_page_shows_every_state_and_curve(book):
    html, _, _ = book
    text = text_of(html / "notebooks" / "beyond.html")
    assert "No reversibility analysis" not in text and "No interpolation analysis" not in text
    folder = html.parents[2] / "results" / "smoke"  # the fixture's records, beside the build
    records = pages.analyses(pages.Study("smoke", "beyond", folder, [], None))
    reversible = curve_frames.reversibility_frame(records["reversibility"])
    assert set(reversible["label"]) == {"LoRA r=4", "LoRA r=8", "LoRA r=16", "Block exp. p=1", "Block exp. p=2",
                                        "Block exp. p=3", "Block exp. p=4"}
    for label in reversible["label"]:
        assert label in text
    soup = BeautifulSoup((html / "notebooks" / "beyond.html").read_text(), "html.parser")
    assert len(soup.select(f"div.{site.CHART_CLASS}")) == 2  # the drift chart, then the interpolation chart


def test_the_paper_page_shows_the_reported_table_and_the_measured_times(book):
    html, frame, runs = book
    text = text_of(html / "notebooks" / "paper_scale.html")
    for label, row in tables.paper_reference().iterrows():
        assert f"{label} {row['family']} {row['trainable params (reported)']} {row['CIFAR-100 (%)']}" in text
    study = pages.Study("smoke", "paper", Path("unused"), runs, None)
    assert " ".join(setup_notes.timing_summary(study).split()) in text
    for record in runs:
        assert f"{record['timings']['total_seconds']:.1f}" in text
    assert "VITCF_IMAGENET" in text


def test_run_it_yourself_notebooks_are_shown_not_executed_with_launch_and_download(book):
    html, _, _ = book
    for page in ("notebooks/pretrain", "notebooks/finetune"):
        soup = BeautifulSoup((html / f"{page}.html").read_text(), "html.parser")
        assert not soup.select("div.cell_output"), page  # the build never trains
        links = [a.get("href", "") for a in soup.find_all("a")]
        assert any(href.startswith("https://colab.research.google.com/github/") for href in links), page
        assert any("mybinder.org" in href for href in links), page
        assert any(href.endswith(f"{page.split('/')[-1]}.ipynb") for href in links), page  # the download
    mini = BeautifulSoup((html / "notebooks" / "mini_study.html").read_text(), "html.parser")
    assert mini.select("div.cell_output")  # the results pages are executed
    for page in ("book/intro", "book/methods"):  # Markdown pages: Colab cannot open them, so no launch button
        links = [a.get("href", "") for a in BeautifulSoup((html / f"{page}.html").read_text(), "html.parser").find_all("a")]
        assert not any("colab.research.google.com" in href or "mybinder.org" in href for href in links), page


MOVE_SLIDER = "(el, v) => { el.value = v; el.dispatchEvent(new Event('input', {bubbles: true})); }"

# The ranking view as drawn: its y-axis labels and score texts, each with its position. Vega's SVG
# renderer moves existing nodes when the order changes, so document order is not display order.
READ_RANKING = """el => {
  const group = el.querySelector('g.ranking_group');
  const read = selector => [...group.querySelectorAll(selector)].map(t => [t.textContent, t.getAttribute('transform')]);
  return {axis: read('g.role-axis-label text'), scores: read('g[class*="ranking_scores"] text')};
}"""


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
    return [(row.label, f"{row.score:.1f}") for row in stats.rank_methods(frame, w).itertuples()]


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


@contextlib.contextmanager
def offline_page(html: Path, path: Path):
    """`path` open in headless Chromium; afterwards, assert it logged no console error and requested
    nothing from the network (the theme's own slips are mended by vitcf.book.site and _config.yml)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            page, requests = browser.new_page(), []
            errors = listen(page, requests)
            page.goto(path.as_uri())
            yield page
        finally:
            browser.close()
    assert errors == []
    remote = [url for url in requests if not url.startswith(("file://", "data:", "blob:"))]
    assert not remote, remote


@contextlib.contextmanager
def redrawn(page, chart):
    """Wait, after the block, until the chart's SVG differs from what it was before the block."""
    before = chart.locator("svg.marks").inner_html()
    yield
    page.wait_for_function("([el, old]) => el.querySelector('svg.marks').innerHTML !== old",
                           arg=[chart.element_handle(), before], timeout=10_000)


@needs_chromium
def test_charts_render_offline_and_the_slider_reranks(book):
    html, frame, _ = book
    labels = set(frame["label"])
    page_file = html / "notebooks" / "mini_study.html"
    text = page_file.read_text()
    assert f'defer="defer" src="../_static/{site.BUNDLE_NAME}' in text  # loaded where a chart is, and only there
    assert site.BUNDLE_NAME not in (html / "book" / "related.html").read_text()
    assert (html / "_static" / site.BUNDLE_NAME).stat().st_size > 500_000
    assert "require.js" not in text and "cdn." not in text
    with offline_page(html, page_file) as page:
        page.wait_for_selector(f".{site.CHART_CLASS} svg.marks g.ranking_group", state="attached", timeout=20_000)
        # the pairwise heatmap, the trade-off, the forgetting curves, then the near-vs-far domains chart
        pairwise, tradeoff, curve, *_ = page.locator(f"div.{site.CHART_CLASS}").all()
        assert tradeoff.locator("g.ranking_group").count() == 1
        pairwise.locator("svg.marks").wait_for(timeout=20_000)
        cells = """el => el.querySelectorAll('g.mark-rect.role-mark path').length"""
        shown = pairwise.evaluate(cells)
        assert shown == len(labels) * (len(labels) - 1)  # every ordered pair of configurations, one measure at a time
        for option in pairwise.locator("select option").all_inner_texts()[1:]:
            with redrawn(page, pairwise):
                pairwise.locator("select").select_option(label=option)
            assert pairwise.evaluate(cells) == shown
        curve.locator("svg.marks").wait_for(timeout=20_000)
        assert same_ranking(displayed(tradeoff, labels), expected(frame, 0.5))

        slider = tradeoff.locator(f'input[type="range"][name="{charts.WEIGHT_PARAM}"]')
        for w in ("1", "0"):
            with redrawn(page, tradeoff):
                slider.evaluate(MOVE_SLIDER, w)
            shown = displayed(tradeoff, labels)
            assert same_ranking(shown, expected(frame, float(w))), (w, shown)
        with redrawn(page, tradeoff):
            tradeoff.locator("select").select_option(label="LoRA")
        assert sorted(label for label, _ in displayed(tradeoff, labels)) == ["LoRA r=16", "LoRA r=4", "LoRA r=8"]
        with redrawn(page, curve):
            curve.locator("select").select_option("10")


@needs_chromium
def test_the_interpolation_slider_moves_the_marked_points(book):
    html, _, _ = book
    with offline_page(html, html / "notebooks" / "beyond.html") as page:
        chart = page.locator(f"div.{site.CHART_CLASS}").last  # the interpolation chart
        chart.locator("svg.marks").wait_for(timeout=20_000)
        marked = """el => [...el.querySelectorAll('g[class*="interpolation_marked"] path')].map(n => n.getAttribute('transform'))"""
        at_one = chart.evaluate(marked)
        assert at_one  # one marked point per curve
        slider = chart.locator(f'input[type="range"][name="{curve_charts.ALPHA_PARAM}"]')
        with redrawn(page, chart):
            slider.evaluate(MOVE_SLIDER, "0")
        assert chart.evaluate(marked) != at_one


# --- every page as a reader sees it -----------------------------------------------------------------

# Every drawn mark of every chart: a line needs a visible stroke, a bar a visible fill, a point either.
READ_MARKS = """() => {
  const visible = v => v !== null && v !== '' && v !== 'none' && v !== 'transparent';
  const shown = (node, attr) => visible(node.getAttribute(attr)) && node.getAttribute(attr + '-opacity') !== '0';
  const out = {lines: 0, unstroked: [], points: 0, bars: 0, unfilled: []};
  for (const g of document.querySelectorAll('svg.marks g.mark-line, svg.marks g.mark-trail')) {
    for (const p of g.querySelectorAll(':scope > path')) {
      out.lines++;
      if (!shown(p, 'stroke')) out.unstroked.push(g.getAttribute('class'));
    }
  }
  for (const g of document.querySelectorAll('svg.marks g.mark-symbol, svg.marks g.mark-rect')) {
    const bar = g.classList.contains('mark-rect');
    for (const p of g.querySelectorAll(':scope > path')) {
      bar ? out.bars++ : out.points++;
      if (!(shown(p, 'fill') || (!bar && shown(p, 'stroke')))) out.unfilled.push(g.getAttribute('class'));
    }
  }
  return out;
}"""
PYTHON_REPR = re.compile(r"<[\w.]+ object>|<[\w.]+ object at 0x[0-9a-f]+>|object at 0x[0-9a-f]+")


def read_every_page(html: Path) -> dict:
    """Open every page of the built book offline in Chromium; per page: its marks once every chart has
    drawn, its text, whether it typesets math, and what it requested that is not local."""
    from playwright.sync_api import sync_playwright

    seen = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            for name in TOC_PAGES:
                page, requests = browser.new_page(), []
                errors = listen(page, requests)
                page.goto((html / f"{name}.html").as_uri())
                page.wait_for_load_state("load")
                drawn = page.locator(f"div.{site.CHART_CLASS}")
                for chart in drawn.all():
                    chart.locator("svg.marks").wait_for(timeout=20_000)
                page.wait_for_timeout(300)  # MathJax typesets after load
                seen[name] = {
                    "charts": drawn.count(), "marks": page.evaluate(READ_MARKS),
                    "text": page.locator("article").inner_text(),
                    "raw_math": page.locator("article .math").count()
                    - page.locator("article .math mjx-container").count(),
                    "math": page.locator("article mjx-container").count(),
                    "remote": [u for u in requests if not u.startswith(("file://", "data:", "blob:"))],
                    "errors": errors,
                }
                page.close()
        finally:
            browser.close()
    return seen


@needs_chromium
def test_every_page_draws_its_marks_and_shows_no_python_object(book):
    html, _, _ = book
    seen = read_every_page(html)
    assert set(seen) == set(TOC_PAGES)
    assert sum(page["charts"] for page in seen.values()) >= 5
    for name, page in seen.items():
        marks = page["marks"]
        assert marks["unstroked"] == [] and marks["unfilled"] == [], (name, marks)
        assert PYTHON_REPR.search(page["text"]) is None, (name, PYTHON_REPR.search(page["text"])[0])
        assert page["remote"] == [], (name, page["remote"])  # the math renderer and the charts are local
        assert page["errors"] == [], (name, page["errors"])  # the theme's too: one Thebe config, a default mode
        assert page["raw_math"] == 0, name  # every formula typeset, none left as TeX
    charted = [seen[name]["marks"] for name in TOC_PAGES if seen[name]["charts"]]
    assert all(m["lines"] + m["points"] + m["bars"] > 0 for m in charted)
    assert seen["notebooks/mini_study"]["marks"]["lines"] > 0  # the forgetting curves are drawn
    assert seen["book/methods"]["math"] > 0  # the methods page's formulas, typeset offline


# How far each chart reaches past the article's column (px; 0 or less: it fits), and its drawn width.
CHART_FIT = """() => {
  const column = document.querySelector('article').getBoundingClientRect();
  return Array.from(document.querySelectorAll('div.vitcf-vega svg.marks')).map(svg => {
    const r = svg.getBoundingClientRect();
    return {past: Math.max(r.right - column.right, column.left - r.left), width: r.width,
            natural: Number(svg.getAttribute('width'))};
  });
}"""


@needs_chromium
def test_every_chart_fits_the_column_on_a_desktop_and_on_a_phone(book):
    from playwright.sync_api import sync_playwright

    html, _, _ = book
    charted = [name for name in TOC_PAGES if f'class="{site.CHART_CLASS}"' in (html / f"{name}.html").read_text()]
    assert "book/intro" in charted and "notebooks/mini_study" in charted
    scaled = 0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            for width in (1280, 400):
                page = browser.new_page(viewport={"width": width, "height": 900})
                for name in charted:
                    page.goto((html / f"{name}.html").as_uri())
                    for chart in page.locator(f"div.{site.CHART_CLASS}").all():
                        chart.locator("svg.marks").wait_for(timeout=20_000)
                    for chart in page.evaluate(CHART_FIT):
                        assert chart["past"] <= 1, (width, name, chart)
                        assert chart["width"] > 0.3 * min(chart["natural"], 300), (width, name, chart)  # still legible
                        scaled += chart["width"] < chart["natural"] - 1
                page.close()
        finally:
            browser.close()
    assert scaled > 0  # on a phone, at least one chart is drawn smaller than its natural width to fit


# Elements that stick out of the article's column and cannot be scrolled to (an ancestor inside the
# column with a horizontal scrollbar makes a wide table readable on a phone), table cells cut with "...",
# and table cells that are a Python repr (None, NaN, True/False, a dict or a tuple) rather than words.
READ_LAYOUT = """() => {
  const article = document.querySelector('article');
  const column = article.getBoundingClientRect();
  const scrolls = el => { for (let a = el.parentElement; a && a !== article; a = a.parentElement) {
      const style = getComputedStyle(a);
      if (['auto', 'scroll'].includes(style.overflowX) && a.getBoundingClientRect().right <= column.right + 1) return true;
    } return false; };
  const out = [];
  for (const el of article.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.right > column.right + 1 && !scrolls(el) && !el.closest('svg')) {
      out.push(el.tagName + '.' + (el.className && el.className.baseVal === undefined ? el.className : '') +
               ' ' + Math.round(r.right - column.right) + 'px');
    }
  }
  const cells = [...article.querySelectorAll('td, th')].map(c => c.textContent.trim());
  const cut = cells.filter(t => t.endsWith('...'));
  const reprs = cells.filter(t => /^(None|NaN|nan|True|False|\(\)|\[\])$|\{'|^\(.*,.*\)$/.test(t));
  return {out, cut, reprs};
}"""


@needs_chromium
def test_every_page_fits_a_desktop_and_a_phone_with_nothing_cut(book):
    from playwright.sync_api import sync_playwright

    html, _, _ = book
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            for width in (1280, 400):
                page = browser.new_page(viewport={"width": width, "height": 900})
                errors = listen(page, [])
                for name in TOC_PAGES:
                    page.goto((html / f"{name}.html").as_uri())
                    for chart in page.locator(f"div.{site.CHART_CLASS}").all():
                        chart.locator("svg.marks").wait_for(timeout=20_000)
                    layout = page.evaluate(READ_LAYOUT)
                    assert layout["out"] == [], (width, name, layout["out"][:5])
                    assert layout["cut"] == [], (width, name, layout["cut"][:5])
                    assert layout["reprs"] == [], (width, name, layout["reprs"][:5])  # no None, NaN, dict or tuple
                assert errors == [], (width, errors[:3])
                page.close()
        finally:
            browser.close()
