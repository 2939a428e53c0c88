"""The study's figures without a browser: chart specs, the ranking, the print figure, offline embedding."""

import json
import re
import statistics
import xml.etree.ElementTree as ET

import ipywidgets as widgets
import pytest
import vl_convert as vlc
from matplotlib.collections import PathCollection

from vitcf.book import analysis_notes, charts, curve_charts, curve_frames, figures, frames, site, stats, tables
from vitcf.model.methods import make_method
from vitcf.base.paper import PAPER_ROWS
from vitcf.model.params import parse_count
from vitcf.book.frames import records_frame
from vitcf.engine.records import read_records
from vitcf.engine.study import run

BASELINE = 50.0
HEAD_BASELINE = 60.0


def record(label, family, params, new, knn, *, seed=0, preset="smoke", over=None, head=None):
    """A run record with just what records_frame and the curve chart read; the linear head keeps
    `head` (default: as much as the k-NN probe) from a baseline of HEAD_BASELINE."""
    return {
        "run": f"{label}_seed{seed}", "preset": preset, "method": label.split()[0].lower(), "family": family,
        "label": label, "hparams": {}, "seed": seed, "trainable_params": params,
        "config": {"selection": "held-out 10% of the train split"},
        "timings": {"train_seconds": 1.0, "images_per_second": 100.0},
        "metrics": {
            "new_domain_accuracy": new, "knn": {10: knn + 1, 20: knn}, "knn_baseline": {10: BASELINE + 1, 20: BASELINE},
            "linear_head": {"after": knn if head is None else head, "baseline": HEAD_BASELINE},
            "knn_over_steps": over or [],
        },
    }


RECORDS = [
    record("Linear", "standard", 330, 30.0, 50.0),
    record("Full", "standard", 150_000, 80.0, 20.0),
    record("Full", "standard", 150_000, 76.0, 24.0, seed=1),
    record("LoRA r=8", "LoRA", 12_618, 60.0, 40.0),
    record("LoRA r=8", "LoRA", 12_618, 62.0, 42.0, seed=1),
    record("Block exp. p=2", "block expansion", 25_738, 55.0, 48.0, head=20.0),  # keeps its k-NN, not its head
]


@pytest.fixture
def frame():
    return records_frame(RECORDS)


def dicts(node):
    """Every dict in a nested spec, depth first."""
    if isinstance(node, dict):
        yield node
        node = list(node.values())
    if isinstance(node, list):
        for item in node:
            yield from dicts(item)


def displayed_ranking(svg: str, labels) -> list[tuple[str, str]]:
    """(label, score text) of the ranking view's bars, top to bottom, read from the rendered SVG."""
    root = ET.fromstring(svg)
    ranking = next(g for g in root.iter() if "ranking_group" in g.get("class", "").split())

    def texts(role):
        return [t for g in ranking.iter() if role in g.get("class", "") for t in g.iter() if t.tag.endswith("text")]

    def height(text):
        return float(re.search(r"translate\(([-\d.]+),([-\d.]+)\)", text.get("transform"))[2])

    axis = sorted((t for t in texts("role-axis-label") if t.text in labels), key=height)  # the x axis has numbers
    scores = sorted(texts("ranking_scores"), key=height)
    assert len(axis) == len(scores)
    return [(a.text, s.text) for a, s in zip(axis, scores)]


# --- the numbers ------------------------------------------------------------------------------

def test_summary_is_the_mean_over_seeds_with_min_max(frame):
    summary = stats.label_summary(frame).set_index("label")
    assert list(summary.index) == ["Linear", "Full", "LoRA r=8", "Block exp. p=2"]  # family order, then size
    full = summary.loc["Full"]
    assert full["n"] == 2
    for column, (mean, low, high) in {"new_domain_accuracy": (78, 76, 80), "pretrain_knn": (22, 20, 24)}.items():
        assert (full[column], full[f"{column}_min"], full[f"{column}_max"]) == (mean, low, high)
    assert full["drop"] == pytest.approx(BASELINE - 22)


def test_ranking_follows_the_weight_and_the_family(frame):
    assert list(stats.rank_methods(frame, 0)["label"]) == ["Full", "LoRA r=8", "Block exp. p=2", "Linear"]
    assert list(stats.rank_methods(frame, 1)["label"]) == ["Linear", "Block exp. p=2", "LoRA r=8", "Full"]
    ranked = stats.rank_methods(frame, 0.3).set_index("label")
    assert ranked.loc["Full", "score"] == pytest.approx(0.3 * 22 + 0.7 * 78)
    assert list(ranked["rank"]) == [1, 2, 3, 4]
    assert list(stats.rank_methods(frame, 0.5, "standard")["label"]) == ["Full", "Linear"]
    with pytest.raises(ValueError, match="'Adapters'"):
        stats.rank_methods(frame, 0.5, "Adapters")


@pytest.mark.parametrize("w", [-0.1, 1.5, True, "0.5"])
def test_the_weight_must_lie_in_0_1(w):
    with pytest.raises(ValueError, match=re.escape(repr(w))):
        stats.tradeoff_score(50.0, 60.0, w)


def test_bad_frames_are_refused_with_the_reason(frame):
    with pytest.raises(ValueError, match="pretrain_knn"):
        charts.tradeoff_chart(frame.drop(columns="pretrain_knn"))
    with pytest.raises(ValueError, match="no rows"):
        charts.tradeoff_chart(frame.iloc[:0])
    mixed = frame.assign(preset=["smoke"] * 5 + ["mini"])
    with pytest.raises(ValueError, match=r"mixes presets \['mini', 'smoke'\]"):
        charts.tradeoff_chart(mixed)
    with pytest.raises(ValueError, match="Adapters"):
        stats.label_summary(frame.assign(family="Adapters"))


def test_paper_frame_matches_the_paper_rows():
    paper = frames.paper_frame()
    assert len(paper) == len(PAPER_ROWS)
    for row, ref in zip(paper.itertuples(), PAPER_ROWS):
        method = make_method(ref.method, **ref.hparams)
        assert (row.label, row.family, row.method) == (method.label, method.family, ref.method)
        assert (row.new_domain_accuracy, row.pretrain_knn, row.mean) == (ref.cifar100, ref.in1k, ref.mean)
        assert row.trainable_params == parse_count(ref.params_text)


# --- the interactive chart ----------------------------------------------------------------------

def test_chart_has_the_slider_the_family_selector_a_log_size_and_the_score(frame):
    spec = charts.tradeoff_chart(frame).to_dict()
    params = {p["name"]: p for p in spec["params"]}
    w = params[charts.WEIGHT_PARAM]
    assert w["value"] == 0.5
    assert w["bind"] | {"name": None} == {"input": "range", "min": 0, "max": 1, "step": 0.05, "name": None}
    family = params[charts.FAMILY_PARAM]
    assert family["select"] == {"type": "point", "fields": ["family"]}
    assert family["bind"]["input"] == "select" and family["bind"]["options"] == [None, *stats.FAMILIES[:3]]  # those drawn
    nodes = list(dicts(spec))
    sizes = [n["size"] for n in nodes if isinstance(n.get("size"), dict) and "field" in n["size"]]
    assert sizes and all(s["field"] == "trainable_params" and s["scale"]["type"] == "log" for s in sizes)
    assert {"calculate": charts.SCORE_EXPR, "as": "score"} in nodes
    assert {"filter": {"param": charts.FAMILY_PARAM}} in nodes  # the ranking follows the dropdown
    assert {"param": charts.FAMILY_PARAM, "value": 0.9} in nodes  # the dropdown highlights its points
    assert [n for n in nodes if n.get("field") == "pretrain_knn_baseline"], "the no-forgetting rule is drawn"
    assert spec["background"] == "white"  # readable on the book's dark theme


@pytest.mark.parametrize("w", [0.0, 0.3, 1.0])
def test_vega_ranks_and_scores_as_python_does(frame, w):
    svg = vlc.vegalite_to_svg(charts.tradeoff_chart(frame, weight=w).to_dict())
    expected = stats.rank_methods(frame, w)
    assert displayed_ranking(svg, set(expected["label"])) == [
        (row.label, f"{row.score:.1f}") for row in expected.itertuples()]


def test_paper_points_only_on_the_paper_preset(frame):
    paper = frames.paper_frame()
    ours = frame.assign(preset="paper")
    nodes = list(dicts(charts.tradeoff_chart(ours, reference=paper).to_dict()))
    hollow = [n for n in nodes if n.get("type") == "point" and n.get("filled") is False]
    assert hollow and hollow[0]["shape"] == "diamond"
    assert any(isinstance(v, list) and any(r.get("label") == "Block exp. p=3" for r in v if isinstance(r, dict))
               for n in nodes for v in n.values())
    for draw in (charts.tradeoff_chart, figures.tradeoff_figure):
        with pytest.raises(ValueError, match=r"preset is \['smoke'\]"):
            draw(frame, reference=paper)


# --- forgetting over steps ----------------------------------------------------------------------

def test_forgetting_curve_with_and_without_data():
    over = [{"step": s, "knn": {"10": 50.0 - s, "20": 49.0 - s}} for s in (0, 5, 10)]  # keys as JSON leaves them
    runs = [record("Full", "standard", 10, 70.0, 39.0, over=over), RECORDS[0]]
    curves = curve_frames.forgetting_curve_frame(runs)
    assert len(curves) == 6 and set(curves["k"]) == {10, 20} and set(curves["run"]) == {"Full_seed0"}
    spec = curve_charts.forgetting_curve_chart(runs).to_dict()
    pick = {p["name"]: p for p in spec["params"]}[curve_charts.K_PARAM]
    assert pick["value"] == 20 and pick["bind"]["options"] == [10, 20]
    assert {"filter": f"datum.k == {curve_charts.K_PARAM}"} in list(dicts(spec))
    assert {p["name"]: p for p in curve_charts.forgetting_curve_chart(runs, k=10).to_dict()["params"]}[curve_charts.K_PARAM][
        "value"] == 10
    with pytest.raises(ValueError, match=r"k=5 was not measured over steps; measured: \[10, 20\]"):
        curve_charts.forgetting_curve_chart(runs, k=5)
    with pytest.raises(ValueError, match="none of the 2 records .* --forgetting-steps"):
        curve_charts.forgetting_curve_chart(RECORDS[:2])


def test_real_smoke_records_draw(tmp_path):
    """Both charts from the records the study really writes (as read back from disk)."""
    run("smoke", "lora", {"r": 4}, seed=0, results_dir=tmp_path, progress=False, forgetting_steps=(0, 3, 6))
    run("smoke", "linear", {}, seed=0, results_dir=tmp_path, progress=False)
    runs = read_records(tmp_path)
    frame = records_frame(runs)
    svg = vlc.vegalite_to_svg(charts.tradeoff_chart(frame).to_dict())
    assert [label for label, _ in displayed_ranking(svg, {"LoRA r=4", "Linear"})] == list(
        stats.rank_methods(frame, 0.5)["label"])
    curve = vlc.vegalite_to_svg(curve_charts.forgetting_curve_chart(runs).to_dict())
    assert "LoRA r=4" in curve and "Training step" in curve
    assert set(curve_frames.forgetting_curve_frame(runs)["step"]) == {0, 3, 6}


def test_an_unprobed_step_zero_is_the_baseline():
    over = [{"step": s, "knn": {"10": 41.0 - s, "20": 40.0 - s}} for s in (1, 10)]
    full = record("Full", "standard", 10, 70.0, 30.0, over=over)
    curves = curve_frames.forgetting_curve_frame([full])
    at_20 = curves[curves["k"] == 20]
    assert list(at_20["step"]) == [0, 1, 10] and list(at_20["probed"]) == [False, True, True]
    assert list(at_20["knn"]) == [BASELINE, 39.0, 30.0]


# --- print figure and explorer ------------------------------------------------------------------

def test_seaborn_figure_has_one_point_per_label_and_probe(frame):
    fig = figures.tradeoff_figure(frame)
    knn, head = fig.axes
    for ax, probe in ((knn, stats.KNN), (head, stats.HEAD)):
        (points,) = [c for c in ax.collections if isinstance(c, PathCollection)]
        assert len(points.get_offsets()) == frame["label"].nunique()
        assert ax.get_xlabel() == charts.X_TITLE and ax.get_ylabel() == probe.title
    block = stats.label_summary(frame).set_index("label").loc["Block exp. p=2"]
    (points,) = [c for c in head.collections if isinstance(c, PathCollection)]
    assert [block["new_domain_accuracy"], 20.0] in points.get_offsets().tolist()  # the head's y, not the k-NN's
    legend = [t.get_text() for t in knn.get_legend().get_texts()]
    assert "Trainable parameters" in legend and "LoRA" in legend
    with_paper = figures.tradeoff_figure(frame.assign(preset="paper"), reference=frames.paper_frame()).axes
    assert [sum(isinstance(c, PathCollection) for c in ax.collections) for ax in with_paper] == [2, 1]
    (only,) = figures.tradeoff_figure(frames.paper_chart_frame()).axes  # the paper reports no linear head
    assert only.get_ylabel() == stats.KNN.title


def _find(widget, kind):
    if isinstance(widget, kind):
        return widget
    for child in getattr(widget, "children", ()):
        found = _find(child, kind)
        if found is not None:
            return found
    return None


def _table_order(html: str, labels) -> list[str]:
    return sorted(labels, key=lambda label: html.index(f"<td>{label}</td>"))


def test_explorer_reranks_when_the_widgets_move(frame):
    box = figures.explorer(frame, weight=0.3)
    slider, dropdown, table = _find(box, widgets.FloatSlider), _find(box, widgets.Dropdown), _find(box, widgets.HTML)
    labels = set(frame["label"])
    assert _table_order(table.value, labels) == list(stats.rank_methods(frame, 0.3)["label"])
    assert f"{stats.rank_methods(frame, 0.3)['score'][0]:.2f}" in table.value
    slider.value = 1.0  # the observer runs as the value changes, as it does in a kernel
    assert _table_order(table.value, labels) == ["Linear", "Block exp. p=2", "LoRA r=8", "Full"]
    slider.value = 0.0
    assert _table_order(table.value, labels) == ["Full", "LoRA r=8", "Block exp. p=2", "Linear"]
    assert dropdown.options == ("all", "standard", "LoRA", "block expansion")
    dropdown.value = "standard"
    assert _table_order(table.value, {"Full", "Linear"}) == ["Full", "Linear"] and "LoRA r=8" not in table.value


# --- offline embedding --------------------------------------------------------------------------

def test_embed_names_no_remote_address_and_survives_a_script_tag_in_a_label(frame):
    nasty = frame.assign(label=frame["label"].replace("Linear", "Linear</script><script>alert(1)"))
    html = site.embed(charts.tradeoff_chart(nasty)).data
    assert "http" not in html.lower() and "cdn" not in html.lower() and "src=" not in html
    assert html.count("</script>") == 1 and html.count("<script") == 1
    assert f'class="{site.CHART_CLASS}"' in html and "window.vegaEmbed(element, spec" in html
    ids = re.findall(r'<div id="([^"]+)"', html)
    assert len(ids) == 1 and f'getElementById("{ids[0]}")' in html
    again = site.embed(charts.tradeoff_chart(nasty)).data
    assert re.findall(r'<div id="([^"]+)"', again) != ids  # two copies of a chart on a page stay apart


def test_vega_bundle_is_written_once(tmp_path):
    path = site.write_vega_bundle(tmp_path / "_static")
    assert path == tmp_path / "_static" / site.BUNDLE_NAME
    text = path.read_text()
    assert len(text) > 500_000 and "window.vegaEmbed=" in text and "Vega-Lite 6." in text.splitlines()[0]
    assert path.stat().st_mode & 0o777 == 0o644  # readable by the web server that serves the book
    stamp = path.stat().st_mtime_ns
    assert site.write_vega_bundle(tmp_path / "_static") == path and path.stat().st_mtime_ns == stamp
    path.write_text("stale")
    site.write_vega_bundle(tmp_path / "_static")
    assert path.read_text() == text
    assert [p.name for p in path.parent.iterdir()] == [site.BUNDLE_NAME]  # no temporary file left


# --- the step slider and the design space ------------------------------------------------------------

def test_the_step_slider_moves_from_probe_to_probe():
    over = [{"step": s, "knn": {"20": 50.0 - s}} for s in (0, 1, 5, 50)]
    runs = [record("Full", "standard", 10, 70.0, 0.0, over=over) | {"config": {"curve_probe": {"bank": 2, "queries": 1}}}]
    spec = curve_charts.forgetting_curve_chart(runs).to_dict()
    params = {p["name"]: p for p in spec["params"]}
    step = params[curve_charts.STEP_PARAM]
    assert step["bind"]["input"] == "radio" and step["bind"]["options"] == [0, 1, 2, 3]
    assert step["value"] == 3 and step["bind"]["labels"] == ["0", "1", "5", "50"]  # the reader sees the step
    assert {"filter": f"datum.probe == {curve_charts.STEP_PARAM}"} in list(dicts(spec))
    svg = vlc.vegalite_to_svg(spec)
    assert "after training step 50" in svg
    curves = curve_frames.forgetting_curve_frame(runs)
    assert list(curves["step"]) == [0, 1, 5, 50]  # probed at 0 on its own (smaller) probe: no baseline filled in


def design_record(method, hparams, label, new, knn, lr=0.005, seed=0, instance=None):
    """A design-space record whose linear head keeps 10 points less than its k-NN probe; `instance`, if
    given, its instance-retrieval accuracy after fine-tuning (from INSTANCE_BASELINE)."""
    metrics = {"new_domain_accuracy": new, "knn": {"20": knn}, "knn_baseline": {"20": BASELINE},
               "linear_head": {"baseline": HEAD_BASELINE, "after": knn - 10}}
    if instance is not None:
        metrics["instance"] = {"baseline": {"20": INSTANCE_BASELINE}, "after": {"20": instance}}
    return {"run": f"{label}_{seed}", "preset": "smoke", "method": method, "hparams": hparams, "family": "x",
            "label": label, "seed": seed, "trainable_params": 100, "config": {"train": {"lr": lr}},
            "metrics": metrics}


INSTANCE_BASELINE = 30.0


DESIGN = [design_record("top_k", {"k": k}, f"Top-{k}", 60.0 + k, 50.0 - 2 * k) for k in (1, 2, 3)] + [
    design_record("top_k", {"k": 1}, "Top-1", 62.0, 47.0, seed=1),
    design_record("lora", {"r": 4}, "LoRA r=4", 70.0, 45.0),
    design_record("lora", {"r": 4, "target": "all"}, "LoRA r=4 (all)", 72.0, 40.0),
    design_record("full", {}, "Full", 80.0, 20.0, lr=0.005),  # no design axis: left out
]


def test_the_design_frame_places_each_run_on_its_axis():
    frame = frames.design_frame(DESIGN)
    assert set(frame["axis"]) == {"Top-k: blocks trained k", "LoRA: rank r"} and "Full" not in set(frame["label"])
    top1 = frame[frame["label"] == "Top-1"].iloc[0]
    assert top1["seeds"] == 2 and top1["pretrain_knn"] == pytest.approx(47.5) and top1["new_domain_accuracy"] == 61.5
    assert set(frame.loc[frame["axis"] == "LoRA: rank r", "series"]) == {"q, v (paper)", "every linear layer"}
    assert list(frame.loc[frame["axis"] == "Top-k: blocks trained k", "value"]) == [1, 2, 3]
    mixed = DESIGN + [design_record("top_k", {"k": 4}, "Top-4", 60.0, 40.0, lr=0.05)]
    with pytest.raises(ValueError, match="mix learning rates"):
        frames.design_frame(mixed)


def test_the_design_chart_picks_an_axis_and_draws_the_baseline():
    frame = frames.design_frame(DESIGN)
    spec = charts.design_chart(frame, before={stats.KNN.name: BASELINE}).to_dict()
    (pick,) = [p for p in spec["params"] if p["name"] == charts.DESIGN_PARAM]
    assert pick["bind"]["options"] == ["LoRA: rank r", "Top-k: blocks trained k"] and pick["value"] == "LoRA: rank r"
    assert {"filter": f"datum.axis == {charts.DESIGN_PARAM}"} in list(dicts(spec))
    svg = vlc.vegalite_to_svg(spec)
    assert "design space" in svg
    with pytest.raises(ValueError, match="axis 'Surgical: block trained' has no records"):
        charts.design_chart(frame, axis="Surgical: block trained")
    with pytest.raises(ValueError, match="no design-space records"):
        charts.design_chart(frames.design_frame([]))


# --- both probes of the pre-training domain, side by side ----------------------------------------------

def fields(spec) -> set[str]:
    """Every field an encoding or an aggregate of (part of) a spec reads."""
    return {n["field"] for n in dicts(spec) if isinstance(n.get("field"), str)}


def named(view, prefix: str) -> bool:
    """Whether `view` holds a view named `prefix` (Altair may suffix the name; the SVG class begins with it)."""
    return any(isinstance(n.get("name"), str) and n["name"].startswith(prefix) for n in dicts(view))


def data_of(spec, view) -> list[list[dict]]:
    """The rows of every dataset that `view`, a part of `spec`, reads."""
    names = {n["data"]["name"] for n in dicts(view) if isinstance(n.get("data"), dict) and "name" in n["data"]}
    return [spec["datasets"][name] for name in sorted(names)]


def test_records_frame_has_both_probes_drops(frame):
    block = frame.set_index("label").loc["Block exp. p=2"]
    assert block["drop"] == BASELINE - 48.0
    assert block["linear_head_drop"] == HEAD_BASELINE - 20.0
    assert block["linear_head_drop"] == block["linear_head_baseline"] - block["linear_head_after"]
    summary = stats.label_summary(frame).set_index("label")
    assert summary.loc["Full", "linear_head_drop"] == pytest.approx(HEAD_BASELINE - 22.0)  # mean over two seeds
    assert (summary.loc["Full", "linear_head_after_min"], summary.loc["Full", "linear_head_after_max"]) == (20.0, 24.0)
    assert stats.probes_of(frame) == (stats.KNN, stats.HEAD)  # these records predate the instance probe
    assert stats.probes_of(frame.assign(instance_after=30.0, instance_baseline=31.0, instance_drop=1.0)) == stats.PROBES
    paper = frames.paper_chart_frame()
    assert stats.probes_of(paper) == (stats.KNN,) and "linear_head_after" not in stats.label_summary(paper)


def test_the_tradeoff_chart_shows_the_linear_head_beside_the_knn(frame):
    spec = charts.tradeoff_chart(frame).to_dict()
    top, ranking = spec["vconcat"]
    knn, head = top["hconcat"]
    assert {stats.KNN.accuracy, stats.KNN.baseline} <= fields(knn) and stats.HEAD.accuracy not in fields(knn)
    assert {stats.HEAD.accuracy, stats.HEAD.baseline, f"{stats.HEAD.accuracy}_min"} <= fields(head)
    assert stats.KNN.accuracy not in fields(head)
    # one family dropdown, defined once, highlighting both panels and filtering the ranking
    assert [p["name"] for p in dicts(spec) if p.get("name") == charts.FAMILY_PARAM and "select" in p] == [
        charts.FAMILY_PARAM]
    for panel in (knn, head):
        assert {"param": charts.FAMILY_PARAM, "value": 0.9} in list(dicts(panel))
    assert "k-NN probe" in ranking["title"]["text"] and "k-NN probe" in top["title"]["subtitle"]
    svg = vlc.vegalite_to_svg(spec)
    assert "Kept, by the linear-head probe" in svg and stats.HEAD.title in svg
    # the paper's numbers have no linear head: one panel, as before
    paper = charts.tradeoff_chart(frames.paper_chart_frame()).to_dict()
    assert "hconcat" not in paper["vconcat"][0] and stats.HEAD.accuracy not in fields(paper)


def test_the_forgetting_curves_show_both_probes_and_tolerate_records_without_the_head():
    new = [{"step": s, "knn": {"10": 50.0 - s, "20": 49.0 - s}, "linear_head": 58.0 - 3 * s} for s in (1, 5, 10)]
    old = [{"step": s, "knn": {"10": 50.0 - s, "20": 49.0 - s}} for s in (1, 5, 10)]
    runs = [record("Full", "standard", 10, 70.0, 39.0, over=new), record("Top-3", "standard", 5, 60.0, 45.0, over=old)]
    curves = curve_frames.forgetting_curve_frame(runs)
    full, top = (curves[(curves["label"] == label) & (curves["k"] == 20)] for label in ("Full", "Top-3"))
    assert list(full["linear_head"]) == [HEAD_BASELINE, 55.0, 43.0, 28.0]  # step 0 is the head's baseline
    assert list(top["step"]) == [0, 1, 5, 10] and top["linear_head"].isna().all()  # no head: no head values
    spec = curve_charts.forgetting_curve_chart(runs).to_dict()
    (knn_curves, head_curves), (knn_bars, head_bars) = (row["hconcat"] for row in spec["vconcat"])
    assert "linear_head" in fields(head_curves) and "linear_head" not in fields(knn_curves)
    assert named(knn_bars, "forgetting_at_step") and named(head_bars, "linear_head_at_step")
    assert not named(head_bars, "forgetting_at_step")  # the browser test reads the k-NN bars by their name
    (data,) = data_of(spec, head_curves)
    assert {row["label"] for row in data} == {"Full"} and len(data) == 4  # one row per step, not per k
    assert {p["name"] for p in spec["params"]} == {curve_charts.K_PARAM, curve_charts.STEP_PARAM}
    svg = vlc.vegalite_to_svg(spec)
    assert "linear-head accuracy at the picked step" in svg and "after training step 10" in svg
    lines = [p for g in ET.fromstring(svg).iter() if "mark-line" in g.get("class", "").split()
             for p in g if p.tag.endswith("path")]
    assert len(lines) == 3 and all(p.get("stroke") not in (None, "none") for p in lines)  # 2 k-NN, 1 head
    # no record with the head's curve: the chart as before, k-NN only
    only_knn = curve_charts.forgetting_curve_chart(runs[1:]).to_dict()
    assert "hconcat" not in only_knn["vconcat"][0] and "linear_head_at_step" not in json.dumps(only_knn)


def test_the_design_space_shows_both_probes():
    frame = frames.design_frame(DESIGN).set_index("label")
    top2 = frame.loc["Top-2"]
    assert (top2["drop"], top2["linear_head_after"], top2["linear_head_drop"]) == (4.0, 36.0, HEAD_BASELINE - 36.0)
    assert frame.loc["Top-1", "linear_head_sd"] == pytest.approx(frame.loc["Top-1", "pretrain_knn_sd"])
    before = {stats.KNN.name: BASELINE, stats.HEAD.name: HEAD_BASELINE}
    spec = charts.design_chart(frames.design_frame(DESIGN), before=before).to_dict()
    (new, knn), (head,) = (row["hconcat"] for row in spec["vconcat"])  # two panels to a row
    assert "pretrain_knn" in fields(knn) and "linear_head_after" in fields(head)
    assert [{"baseline": HEAD_BASELINE}] in data_of(spec, head) and [{"baseline": BASELINE}] in data_of(spec, knn)
    table = tables.design_table(frames.design_frame(DESIGN))
    columns = list(table.columns)
    assert columns.index("linear-head probe (%)") == columns.index("k-NN drop (points)") + 1
    assert table.loc[table["label"] == "Top-2", "linear-head drop (points)"].item() == HEAD_BASELINE - 36.0
    assert not any("instance" in column for column in columns)  # these records predate the instance probe


def test_the_design_space_shows_the_instance_probe_and_the_reference_levels():
    runs = [design_record("top_k", {"k": k}, f"Top-{k}", 60.0 + k, 50.0 - 2 * k, instance=25.0 - k) for k in (1, 2)]
    runs += [design_record("top_k", {"k": 1}, "Top-1", 62.0, 47.0, seed=1, instance=22.0)]
    frame = frames.design_frame(runs).set_index("label")
    assert frame.loc["Top-1", "instance_after"] == pytest.approx(23.0)
    assert frame.loc["Top-1", "instance_drop"] == pytest.approx(INSTANCE_BASELINE - 23.0)
    assert frame.loc["Top-1", "instance_sd"] == pytest.approx(statistics.stdev([24.0, 22.0]))
    baseline = {"knn": {"20": BASELINE}, "linear_head": HEAD_BASELINE, "instance": {"20": INSTANCE_BASELINE},
                "levels": {"random_init": {"knn": {"20": 11.0}, "linear_head": 12.0, "instance": {"20": 3.0}},
                           "raw_pixels": {"knn": {"20": 44.0}, "linear_head": 41.0, "instance": {"20": 9.0}}}}
    before = frames.before_finetuning(baseline)
    assert before == {stats.KNN.name: BASELINE, stats.HEAD.name: HEAD_BASELINE, stats.INSTANCE.name: INSTANCE_BASELINE}
    spec = charts.design_chart(frames.with_levels(frames.design_frame(runs), baseline), before=before).to_dict()
    (new, knn), (head, instance) = (row["hconcat"] for row in spec["vconcat"])
    assert [panel["layer"][0]["encoding"]["y"]["field"] for panel in (knn, head, instance)] == [
        "pretrain_knn", "linear_head_after", "instance_after"]
    assert [{"baseline": INSTANCE_BASELINE}] in data_of(spec, instance)
    assert [{"instance_after_random_init": 3.0}] in data_of(spec, instance)
    assert [{"instance_after_raw_pixels": 9.0}] in data_of(spec, instance)
    svg = vlc.vegalite_to_svg(spec)
    assert "random-init network" in svg and "raw pixels" in svg
    table = tables.design_table(frames.design_frame(runs))
    assert table.loc[table["label"] == "Top-2", "instance drop (points)"].item() == INSTANCE_BASELINE - 23.0


def analysis(kind, label, scores, *, head=True):
    """An analysis record: `scores` maps a state (or an alpha) to (new domain, k-NN, linear head)."""
    def probe(new, knn, lh):
        return {"new_domain_accuracy": new, "knn": {"20": knn}} | ({"linear_head": lh} if head else {})

    base = {"knn": {"20": BASELINE}} | ({"linear_head": HEAD_BASELINE} if head else {})
    record = {"analysis": kind, "run": f"{label}_seed0", "preset": "smoke", "label": label, "family": "LoRA",
              "seed": 0, "baseline": base}
    if kind == "reversibility":
        return record | {"states": {state: probe(*values) for state, values in scores.items()}}
    return record | {"points": [{"alpha": alpha} | probe(*values) for alpha, values in scores.items()]}


def test_the_analyses_show_both_probes():
    flip = analysis("reversibility", "LoRA r=8", {"adapted": (80.0, 45.0, 30.0), "removed": (40.0, BASELINE,
                                                                                               HEAD_BASELINE)})
    states = curve_frames.reversibility_frame([flip]).set_index("state")
    assert states.loc["adapted", "drop"] == 5.0 and states.loc["adapted", "linear_head_drop"] == 30.0
    assert states.loc["removed", "linear_head_drop"] == 0.0
    older = analysis("reversibility", "LoRA r=4", {"adapted": (80.0, 45.0, None)}, head=False)
    assert curve_frames.reversibility_frame([older])["linear_head_drop"].isna().all()
    table = tables.reversibility_table([flip, older])
    assert list(table.columns.get_level_values(0).unique()) == [
        "new domain (%)", "k-NN drop (points), k=20", "linear-head drop (points)"]
    assert table.loc[("LoRA r=8", 0), ("linear-head drop (points)", "adapted")] == "30.00"
    assert table.loc[("LoRA r=4", 0), ("new domain (%)", "removed")] == tables.MISSING  # no such state: no NaN
    assert list(tables.reversibility_table([older]).columns.get_level_values(0).unique()) == [
        "new domain (%)", "k-NN drop (points), k=20"]  # a record without the head: no empty column

    curve = analysis("interpolation", "LoRA r=8", {0.0: (40.0, 50.0, 60.0), 1.0: (80.0, 45.0, 30.0)})
    assert list(curve_frames.interpolation_frame([curve])["linear_head_after"]) == [60.0, 30.0]
    spec = curve_charts.interpolation_chart([curve]).to_dict()
    knn, head = spec["hconcat"]
    assert "pretrain_knn" in fields(knn) and "linear_head_after" in fields(head)
    assert named(knn, "interpolation_marked") and named(head, "head_marked") and not named(head, "interpolation_marked")
    assert spec["params"][0]["name"] == curve_charts.ALPHA_PARAM
    bare = curve_charts.interpolation_chart([analysis("interpolation", "Full", {0.0: (40.0, 50.0, 0), 1.0: (80.0, 45.0, 0)},
                                               head=False)]).to_dict()
    assert "hconcat" not in bare and "linear_head_after" not in fields(bare)


def test_the_beyond_page_answers_first_from_the_analyses():
    back = analysis("reversibility", "LoRA r=8", {"adapted": (80.0, 45.0, 30.0), "merged": (80.0, 45.0, 30.0),
                                                  "removed": (40.0, BASELINE, HEAD_BASELINE)})
    kept = analysis_notes.reversal_sentence([back])
    assert "exactly in the one reversible run" in kept and "from 80.00% down to 40.00%" in kept
    assert "merged weights score exactly as its adapter" in kept
    slipped = analysis("reversibility", "LoRA r=4", {"adapted": (80.0, 45.0, 30.0),
                                                     "removed": (40.0, BASELINE - 2, HEAD_BASELINE)})
    assert "exactly in 1 of 2 reversible runs" in analysis_notes.reversal_sentence([back, slipped])
    curve = analysis("interpolation", "Full", {0.0: (40.0, 50.0, 60.0), 0.5: (60.0, 49.5, 50.0),
                                               1.0: (80.0, 45.0, 30.0)})
    moved = analysis_notes.interpolation_sentence([curve])
    assert "Full keeps k-NN within 1 point of the pre-trained backbone up to alpha = 0.5" in moved
    assert "reaches 60.00% on the new domain (80.00% at alpha = 1" in moved
    headline = analysis_notes.beyond_headline({"reversibility": [back], "interpolation": [curve]}, [])
    assert headline.startswith("**In short.**") and kept in headline and moved in headline
    assert analysis_notes.beyond_headline({}, []) == ""  # nothing recorded: nothing claimed
