"""The book as published: built from the committed mini and mini-glyphs records and the shipped backbone, then read.

The module fixture builds this checkout's book exactly as `make book` does once every run is recorded
(no sweep, no environment override) into a temporary folder. The tests check that every results page
is filled from the records (no "no run is recorded" placeholder), and drive the mini-study page's
trade-off slider and forgetting-step slider in headless Chromium.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_book import (
    CHROMIUM,
    MOVE_SLIDER,
    READ_LAYOUT,
    displayed,
    expected,
    needs_chromium,
    offline_page,
    redrawn,
    same_ranking,
    text_of,
)

from vitcf.book import axis_charts, charts, curve_charts, pages, site, stats
from vitcf.model.backbones import weights_dir

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "results" / "mini"
GLYPHS = REPO / "results" / "mini-glyphs"
RESULTS_PAGES = ["notebooks/mini_study", "notebooks/beyond", "notebooks/design_space", "notebooks/axes",
                 "notebooks/discussion"]


@pytest.fixture(scope="module")
def mini_book(tmp_path_factory):
    for folder in (RESULTS, GLYPHS):
        assert any(folder.glob("*.json")), f"no committed records in {folder}: run `make book` and commit them"
    assert (weights_dir() / "mini.json").is_file(), "the shipped mini backbone's card is missing"
    out = tmp_path_factory.mktemp("mini-book")
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    env = {k: v for k, v in os.environ.items() if k not in (pages.RESULTS_ENV, pages.PRESET_ENV)}
    build = subprocess.run([str(jupyter_book), "build", str(REPO), "-W", "-n", "--keep-going", "--path-output",
                            str(out)], capture_output=True, text=True, timeout=1800, env=env, cwd=REPO)
    assert build.returncode == 0, build.stdout[-6000:] + build.stderr[-4000:]
    study = pages.load_study("mini-glyphs")
    return out / "_build" / "html", study


def test_every_results_page_is_filled_from_the_records(mini_book):
    html, study = mini_book
    assert not study.empty and study.preset == "mini-glyphs"
    for name in RESULTS_PAGES:
        text = text_of(html / f"{name}.html")
        assert "No run of the" not in text and "is recorded in" not in text.replace("records", ""), name
        assert "These records lack" not in text, name
    beyond = text_of(html / "notebooks" / "beyond.html")
    assert "In short." in beyond and "The representation moved most" in beyond  # the analyses' answer first
    assert "NaN" not in beyond
    mini = text_of(html / "notebooks" / "mini_study.html")
    card = pages.weights_card("mini")
    assert card["weights"]["sha256"] in mini  # the backbone section reads the shipped card
    assert "Learning curve." in mini and "Recipe search." in mini
    for label, row in study.frame().groupby("label")["new_domain_accuracy"].mean().items():
        assert f"{row:.2f}" in mini, label  # the results table is the records'
    assert "instance retrieval (%), k=20" in mini and "Positive control." in mini
    near = pages.load_study("mini").frame()
    for label, row in near.groupby("label")["new_domain_accuracy"].mean().round(2).items():
        assert f"{row:g}" in mini, label  # the near domain's accuracies, beside the far one's


@needs_chromium
def test_the_mini_page_sliders_rerank_and_redraw(mini_book):
    html, study = mini_book
    frame = study.frame()
    labels = set(frame["label"])
    with offline_page(html, html / "notebooks" / "mini_study.html") as page:
        page.wait_for_selector(f".{site.CHART_CLASS} svg.marks g.ranking_group", state="attached", timeout=30_000)
        drawn = page.locator(f"div.{site.CHART_CLASS}")
        tradeoff = drawn.filter(has=page.locator(f'input[name="{charts.WEIGHT_PARAM}"]'))
        curve = drawn.filter(has=page.locator(f'input[name="{curve_charts.STEP_PARAM}"]'))
        curve.locator("svg.marks").wait_for(timeout=30_000)
        assert same_ranking(displayed(tradeoff, labels), expected(frame, 0.5))
        slider = tradeoff.locator(f'input[type="range"][name="{charts.WEIGHT_PARAM}"]')
        rankings = set()
        for w in ("1", "0"):
            with redrawn(page, tradeoff):
                slider.evaluate(MOVE_SLIDER, w)
            shown = displayed(tradeoff, labels)
            assert same_ranking(shown, expected(frame, float(w))), (w, shown)
            rankings.add(tuple(label for label, _ in shown))
        assert len(rankings) == 2  # keeping everything and learning most rank the methods differently

        bars = """el => [...el.querySelectorAll('g[class*="forgetting_at_step"] path')].map(p => p.getAttribute('d'))"""
        at_end = curve.evaluate(bars)
        with redrawn(page, curve):
            curve.locator(f'input[type="radio"][name="{curve_charts.STEP_PARAM}"][value="0"]').check()  # before any step
        at_start = curve.evaluate(bars)
        assert at_start and at_start != at_end


@needs_chromium
def test_the_axes_page_rate_and_length_sliders_redraw(mini_book):
    html, _ = mini_book
    marks = """(el, name) => [...el.querySelectorAll(`g.role-mark[class*="${name}"] :is(path, line)`)]
                                .map(m => m.outerHTML)"""  # the marks of the named view, not its axes
    with offline_page(html, html / "notebooks" / "axes.html") as page:
        drawn = page.locator(f"div.{site.CHART_CLASS}")
        rate_chart = drawn.filter(has=page.locator(f'input[name="{axis_charts.RATE_PARAM}"]'))
        length_chart = drawn.filter(has=page.locator(f'input[name="{axis_charts.LENGTH_PARAM}"]'))
        for chart in (rate_chart, length_chart):
            chart.locator("svg.marks").wait_for(timeout=30_000)
        rates = rate_chart.locator(f'input[type="radio"][name="{axis_charts.RATE_PARAM}"]')
        seen = []
        for index in reversed(range(rates.count())):  # every rate of the grid
            with redrawn(page, rate_chart):
                rates.nth(index).check()
            bars = [bar for view in ("at_rate_knn", "at_rate_linear_head", "at_rate_instance_retrieval")
                    for bar in rate_chart.evaluate(marks, view)]
            assert len(bars) == 3 * len(stats.AXIS_LABELS), index  # one bar per family and probe
            seen.append(tuple(bars))
        assert len(set(seen)) == len(seen)  # each rate draws its own bars

        lengths = length_chart.locator(f'input[type="radio"][name="{axis_charts.LENGTH_PARAM}"]')
        curves = []
        for index in reversed(range(lengths.count())):  # from the longest: it starts at 0
            with redrawn(page, length_chart):
                lengths.nth(index).check()
            drawn = (length_chart.evaluate(marks, "curve_instance_retrieval"),
                     length_chart.evaluate(marks, "at_length_knn"))
            assert drawn[0] and drawn[1], index  # the instance probe's curves and the picked length's rule
            curves.append(drawn)
        assert len({c[0][0] for c in curves}) == len(curves) and len({c[1][0] for c in curves}) == len(curves)


# Every control of every chart on a page: its name, kind, the labels it shows and, for a slider, the
# value it selects beside the value it shows.
READ_CONTROLS = """() => [...document.querySelectorAll('.vega-bind')].map(bind => {
  const input = bind.querySelector('input, select');
  const labels = input.type === 'radio'
    ? [...bind.querySelectorAll('input[type=radio]')].map(r => [r.value, r.parentElement.textContent.trim()])
    : input.tagName === 'SELECT' ? [...input.options].map((o, i) => [String(i), o.textContent.trim()]) : [];
  const shown = bind.querySelector('span.vega-bind-name ~ span, input[type=range] ~ span');
  return {name: bind.querySelector('.vega-bind-name').textContent.trim(), kind: input.type, labels,
          min: input.min, max: input.max, value: input.value, shown: shown && shown.textContent.trim()};
})"""


def _data_values() -> dict[str, set[float]]:
    """Per control name, the values of the data it may pick from: every preset's probe steps, the rate and
    schedule axes' rates and lengths, and the resolution axis's source sizes with the datasets' own sides."""
    from vitcf.engine.presets import PRESETS, get_preset
    from vitcf.engine.sources import SIDES

    presets = [get_preset(name) for name in PRESETS]
    points = {grid: [p for preset in presets for p in preset.points(grid)] for grid in ("rates", "schedule", "resolution")}
    return {
        "Probed after training step": {s for p in presets for s in (*p.forgetting_steps, *p.long_forgetting_steps)},
        "Learning rate": {p.lr for p in points["rates"]} - {None},
        "Schedule length (steps)": {p.steps for p in points["schedule"]} | {p.steps for p in presets},
        "Source resolution": {p.source_size for p in points["resolution"]} | set(SIDES.values()),
    }


def _number(label: str) -> float:
    return float(label.split(" px")[0].replace(",", ""))


@needs_chromium
def test_every_control_shows_a_value_of_the_data(mini_book):
    """No control shows a position instead of a value: pickers are labelled with the data's values, and a
    slider's label reads the value it selects, at either end."""
    html, _ = mini_book
    data = _data_values()
    seen = set()
    for name in RESULTS_PAGES:
        with offline_page(html, html / f"{name}.html") as page:
            for chart in page.locator(f"div.{site.CHART_CLASS}").all():
                chart.locator("svg.marks").wait_for(state="attached", timeout=30_000)
            for control in page.evaluate(READ_CONTROLS):
                seen.add(control["name"])
                texts = [text for _, text in control["labels"]]
                if len(texts) > 1:
                    assert texts != [str(i) for i in range(len(texts))], (name, control)  # positions, not values
                if control["name"] in data:
                    assert {_number(t) for t in texts} <= data[control["name"]], (name, control)
            for slider in page.locator(".vega-bind input[type=range]").all():
                for end in ("min", "max"):
                    slider.evaluate(MOVE_SLIDER, slider.get_attribute(end))
                    shown = slider.evaluate("el => el.parentElement.querySelector('span:not(.vega-bind-name)')"
                                            ".textContent")
                    assert float(shown) == float(slider.get_attribute(end)), (name, end, shown)
    assert set(data) <= seen  # every picker over the data was read


@needs_chromium
def test_no_page_shows_a_python_repr_or_a_cut_cell(mini_book):
    """The published book's tables read as words and numbers at any width: no None, NaN, dict or tuple
    repr, no cell cut with "...", nothing out of the column."""
    html, _ = mini_book
    for name in [*RESULTS_PAGES, "notebooks/paper_scale", "book/intro", "book/reproducibility"]:
        with offline_page(html, html / f"{name}.html") as page:
            for width in (1280, 400):
                page.set_viewport_size({"width": width, "height": 900})
                for chart in page.locator(f"div.{site.CHART_CLASS}").all():
                    chart.locator("svg.marks").wait_for(state="attached", timeout=30_000)
                layout = page.evaluate(READ_LAYOUT)
                assert layout["reprs"] == [] and layout["cut"] == [], (name, width, layout["reprs"][:5], layout["cut"][:5])
                assert layout["out"] == [], (name, width, layout["out"][:5])
