"""The study's figures: interactive charts for the static book, figures for print, a live explorer.

The published book has no kernel, so its interactivity has to run in the reader's browser: the
trade-off chart is Vega-Lite, with a slider (the weight w between stability and plasticity) and a
family dropdown bound to Vega-Lite parameters. Print needs static images (`tradeoff_figure`, seaborn).
Readers who run the notebooks get `explorer`, ipywidgets whose Python callbacks need a live kernel.

The book is read offline and must not fetch Vega from a CDN. `write_vega_bundle` writes one local
file holding Vega, Vega-Lite and vega-embed (vl-convert's bundle, about 0.9 MB), and `embed` renders
a chart against it; the book's Sphinx extension (`vitcf.book.bookext`) writes that file into the built book
and loads it on exactly the pages that show a chart.

Several seeds of one configuration are shown as one point (their mean) with min-max bars: the
question is how methods compare, and the spread says how far a single run can be trusted.

Forgetting is measured by two probes of the pre-training domain (`PROBES`), and every view that
shows what was kept shows both side by side: the k-NN probe (the paper's: does the neighbourhood
structure of the features still separate the pre-training classes?) and the linear head fitted once
on the pre-trained features and applied, frozen, after fine-tuning (do the features still fit a
readout fitted before?). Numbers with no linear head (the paper's) are drawn with the k-NN alone.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import os
import tempfile
from pathlib import Path
from typing import NamedTuple

import altair as alt
import pandas as pd

from vitcf.model.methods import make_method
from vitcf.base.paper import PAPER_ROWS
from vitcf.model.params import parse_count, summary_count

# The paper's grouping, in its table order; then the positive control (runs built to wreck the representation).
FAMILIES = ("standard", "LoRA", "block expansion", "control")
FAMILY_COLOURS = {"standard": "#4c78a8", "LoRA": "#f58518", "block expansion": "#54a24b", "control": "#9d9d9d"}

WEIGHT_PARAM = "w"
# The ranking score as Vega evaluates it in the browser; `tradeoff_score` is the same in Python.
SCORE_EXPR = f"{WEIGHT_PARAM} * datum.pretrain_knn + (1 - {WEIGHT_PARAM}) * datum.new_domain_accuracy"
FAMILY_PARAM = "family_pick"
K_PARAM = "k_pick"
STEP_PARAM = "step_pick"

BUNDLE_NAME = "vitcf-vega.js"
CHART_CLASS = "vitcf-vega"  # marks an embedded chart in a page, so the bundle is loaded only there

# Opaque, so black axis text stays readable when the book is switched to its dark theme.
BACKGROUND = "white"
X_TITLE = "New-domain accuracy (%)"
Y_TITLE = "Pre-training-domain k-NN accuracy (%)"
FRAME_COLUMNS = ("label", "family", "trainable_params", "new_domain_accuracy", "pretrain_knn",
                 "pretrain_knn_baseline", "drop")


class Probe(NamedTuple):
    """A probe of the pre-training domain: its name and its columns in `records_frame`'s frame."""

    name: str
    accuracy: str
    drop: str
    baseline: str
    title: str  # the axis title of its accuracy

    @property
    def adjective(self) -> str:
        """'k-NN', 'linear-head' (as in 'linear-head accuracy')."""
        return self.name.replace(" ", "-")

    @property
    def words(self) -> str:
        """'the k-NN probe', 'the linear-head probe'."""
        return f"the {self.adjective} probe"


KNN = Probe("k-NN", "pretrain_knn", "drop", "pretrain_knn_baseline", Y_TITLE)
HEAD = Probe("linear head", "linear_head_after", "linear_head_drop", "linear_head_baseline",
             "Pre-training-domain linear-head accuracy (%)")
INSTANCE = Probe("instance retrieval", "instance_after", "instance_drop", "instance_baseline",
                 "Pre-training-domain instance-retrieval accuracy (%)")
PROBES = (KNN, HEAD, INSTANCE)  # the paper's probe first


def measured(frame: pd.DataFrame, probe: Probe, columns: tuple[str, ...] | None = None) -> bool:
    """Whether `frame` holds `probe`'s values, in `columns` (default: its accuracy, drop and baseline).
    The k-NN probe always is; the paper's numbers have no other, and older records no instance probe."""
    columns = (probe.accuracy, probe.drop, probe.baseline) if columns is None else columns
    return all(column in frame.columns for column in columns) and bool(frame[probe.accuracy].notna().any())


def has_head(frame: pd.DataFrame, columns=(HEAD.accuracy, HEAD.drop, HEAD.baseline)) -> bool:
    """Whether `frame` holds the linear-head probe's values, in `columns` (the paper's numbers have none)."""
    return measured(frame, HEAD, columns)


def probes_of(frame: pd.DataFrame) -> tuple[Probe, ...]:
    """The probes `frame` has values for: the k-NN probe always, the others where measured."""
    return (KNN, *(p for p in PROBES[1:] if measured(frame, p)))


def _side_by_side(charts: list):
    """One chart as it is, several in a row."""
    return charts[0] if len(charts) == 1 else alt.hconcat(*charts)


# --- the numbers behind every view -------------------------------------------------------------

def tradeoff_score(pretrain_knn, new_domain_accuracy, w: float):
    """w * pretrain_knn + (1 - w) * new_domain_accuracy: one number per method for a given priority.

    w = 1 ranks by what is kept of the pre-training domain (stability), w = 0 by what is learnt of
    the new one (plasticity). The browser computes SCORE_EXPR; the tests hold the two together.
    """
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w <= 1:
        raise ValueError(f"the weight w must be a number in [0, 1], got {w!r}")
    return w * pretrain_knn + (1 - w) * new_domain_accuracy


def _check_frame(frame: pd.DataFrame, columns=FRAME_COLUMNS) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"the frame lacks column(s) {', '.join(missing)}; build it with vitcf.engine.records.records_frame")
    if frame.empty:
        raise ValueError("the frame has no rows: there is nothing to plot")
    if "preset" in frame.columns and frame["preset"].nunique() > 1:
        raise ValueError(f"the frame mixes presets {sorted(frame['preset'].unique())}; their accuracies are on "
                         "different datasets and cannot share axes, so plot one preset at a time")
    unknown = sorted(set(frame["family"]) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown method family {unknown}; known: {', '.join(FAMILIES)}")


def label_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per label (configuration): the mean over its seeds, with min and max, and n seeds.

    Every measured probe's accuracy (mean, min, max), baseline and drop (`probes_of`).

    Rows come in the paper's family order, then by trainable parameters, so every view lists
    methods the same way.
    """
    _check_frame(frame)
    families = frame.groupby("label")["family"].nunique()
    if (families > 1).any():
        raise ValueError(f"label(s) {list(families[families > 1].index)} appear under several families")
    grouped = frame.groupby("label", sort=False)
    head = {}
    for probe in probes_of(frame)[1:]:
        head |= {probe.accuracy: (probe.accuracy, "mean"), f"{probe.accuracy}_min": (probe.accuracy, "min"),
                 f"{probe.accuracy}_max": (probe.accuracy, "max"), probe.baseline: (probe.baseline, "mean"),
                 probe.drop: (probe.drop, "mean")}
    summary = grouped.agg(
        family=("family", "first"),
        trainable_params=("trainable_params", "max"),
        n=("label", "size"),
        new_domain_accuracy=("new_domain_accuracy", "mean"),
        new_domain_accuracy_min=("new_domain_accuracy", "min"),
        new_domain_accuracy_max=("new_domain_accuracy", "max"),
        pretrain_knn=("pretrain_knn", "mean"),
        pretrain_knn_min=("pretrain_knn", "min"),
        pretrain_knn_max=("pretrain_knn", "max"),
        pretrain_knn_baseline=("pretrain_knn_baseline", "mean"),
        drop=("drop", "mean"),
        **head,
        **{c: (c, "first") for c in frame.columns if c.endswith(tuple(f"_{level}" for level, _ in LEVELS))},
    ).reset_index()
    order = summary["family"].map(FAMILIES.index)
    return summary.assign(_order=order).sort_values(["_order", "trainable_params", "label"]).drop(
        columns="_order").reset_index(drop=True)


def rank_methods(frame: pd.DataFrame, w: float, family: str | None = None) -> pd.DataFrame:
    """The labels ranked by `tradeoff_score` at weight `w` (best first), optionally of one family.

    This is the ranking the chart's bar view shows at the same slider position.
    """
    summary = label_summary(frame)
    if family is not None:
        if family not in FAMILIES:
            raise ValueError(f"unknown method family {family!r}; known: {', '.join(FAMILIES)}")
        summary = summary[summary["family"] == family]
    summary = summary.assign(score=tradeoff_score(summary["pretrain_knn"], summary["new_domain_accuracy"], w))
    ranked = summary.sort_values(["score", "label"], ascending=[False, True]).reset_index(drop=True)
    return ranked.assign(rank=range(1, len(ranked) + 1))


def paper_frame() -> pd.DataFrame:
    """The paper's reported points (PAPER_ROWS) in the columns of `records_frame`.

    new_domain_accuracy is the CIFAR-100 accuracy and pretrain_knn the IN-1K k-NN accuracy after
    fine-tuning; trainable_params is the count as printed in the paper (its nominal value), which is
    what a reader of the paper compares with.
    """
    rows = []
    for row in PAPER_ROWS:
        method = make_method(row.method, **row.hparams)
        rows.append({
            "label": method.label, "method": row.method, "family": method.family,
            "trainable_params": parse_count(row.params_text),
            "new_domain_accuracy": row.cifar100, "pretrain_knn": row.in1k, "mean": row.mean,
        })
    return pd.DataFrame(rows)


def _check_reference(frame: pd.DataFrame, reference: pd.DataFrame | None) -> None:
    """The paper's points share axes only with the paper preset (ViT-B/16, CIFAR-100, ImageNet-1K)."""
    if reference is None:
        return
    _check_frame(reference, ("label", "family", "new_domain_accuracy", "pretrain_knn"))
    if "preset" in frame.columns and set(frame["preset"]) != {"paper"}:
        raise ValueError(f"reference points are the paper's (CIFAR-100 / ImageNet-1K) results; the frame's preset "
                         f"is {sorted(frame['preset'].unique())}, whose datasets differ: use the paper preset")


# --- the interactive trade-off chart (Vega-Lite) --------------------------------------------------

def _colour() -> alt.Color:
    return alt.Color("family:N", title="Family",
                     scale=alt.Scale(domain=list(FAMILIES), range=[FAMILY_COLOURS[f] for f in FAMILIES]))


def _size() -> alt.Size:
    # Trainable counts span three orders of magnitude (a linear head to the full ViT): log scale.
    return alt.Size("trainable_params:Q", title="Trainable parameters",
                    scale=alt.Scale(type="log", range=[30, 400]), legend=alt.Legend(format="~s"))


def _family_selection(families: list[str]) -> alt.Parameter:
    dropdown = alt.binding_select(options=[None, *families], labels=["all", *families], name="Method family ")
    return alt.selection_point(name=FAMILY_PARAM, fields=["family"], bind=dropdown)


def _points(summary: pd.DataFrame, probe: Probe, family: alt.Parameter, *, reference=None, title: str,
            subtitle=alt.Undefined, width: int) -> alt.LayerChart:
    """The trade-off plane of one probe: x = new-domain accuracy, y = the probe's pre-training-domain accuracy."""
    x = alt.X("new_domain_accuracy:Q", title=X_TITLE, scale=alt.Scale(zero=False))
    y = alt.Y(f"{probe.accuracy}:Q", title=probe.title, scale=alt.Scale(zero=False))
    highlight = alt.condition(family, alt.value(0.9), alt.value(0.12))
    base = alt.Chart(summary)
    points = base.mark_point(filled=True).encode(
        x=x, y=y, color=_colour(), size=_size(), opacity=highlight,
        tooltip=[
            alt.Tooltip("label:N", title="method"),
            alt.Tooltip("trainable_params:Q", title="trainable parameters", format=","),
            alt.Tooltip("new_domain_accuracy:Q", title="new-domain accuracy", format=".2f"),
            alt.Tooltip(f"{probe.accuracy}:Q", title=f"pre-training, {probe.words}", format=".2f"),
            alt.Tooltip(f"{probe.drop}:Q", title=f"{probe.adjective} drop from pre-trained", format=".2f"),
            alt.Tooltip("n:Q", title="seeds"),
        ],
    )
    # The family dropdown is defined once, on the k-NN view; every other view reads it.
    points = points.add_params(family).properties(name="tradeoff_points") if probe is KNN else points.properties(
        name=POINTS_NAME[probe.name])
    spread = base.transform_filter("datum.n > 1")
    x_spread = spread.mark_rule().encode(
        x=alt.X("new_domain_accuracy_min:Q", title=X_TITLE), x2="new_domain_accuracy_max:Q",
        y=alt.Y(f"{probe.accuracy}:Q", title=probe.title), color=_colour(), opacity=highlight)
    y_spread = spread.mark_rule().encode(
        x=alt.X("new_domain_accuracy:Q", title=X_TITLE), y=alt.Y(f"{probe.accuracy}_min:Q", title=probe.title),
        y2=f"{probe.accuracy}_max:Q", color=_colour(), opacity=highlight)
    ceiling = alt.Chart(pd.DataFrame({probe.baseline: [float(summary[probe.baseline].mean())]}))
    rule = ceiling.mark_rule(strokeDash=[6, 4], color="gray").encode(y=alt.Y(f"{probe.baseline}:Q", title=probe.title))
    note = ceiling.mark_text(align="left", baseline="bottom", dx=4, dy=-3, color="gray").encode(
        y=alt.Y(f"{probe.baseline}:Q", title=probe.title), x=alt.value(0),
        text=alt.value("pre-trained backbone (no forgetting)"))
    layers = [rule, note, *_level_rules(summary, probe), x_spread, y_spread, points]
    if reference is not None:
        layers.append(_reference_points(reference, family))
    return alt.layer(*layers).properties(width=width, height=300, title=alt.Title(title, subtitle=subtitle))


POINTS_NAME = {HEAD.name: "head_points", INSTANCE.name: "instance_points"}  # the browser tests read them by name
# The reference levels of a probe drawn under its points where the frame has them (`with_levels`).
LEVELS = (("random_init", "random-init network"), ("raw_pixels", "raw pixels"))


def with_levels(frame: pd.DataFrame, baseline: dict | None, k: int = 20) -> pd.DataFrame:
    """`frame` with each probe's reference levels from the folder's baseline record (raw pixels and a
    random-init network on the same bank and queries) as columns `<probe accuracy>_<level>`."""
    levels = (baseline or {}).get("levels") or {}
    columns = {}
    for level, _ in LEVELS:
        scores = levels.get(level) or {}
        for probe, key in ((KNN, "knn"), (HEAD, "linear_head"), (INSTANCE, "instance")):
            value = scores.get(key)
            if isinstance(value, dict):
                value = value.get(str(k), value.get(k))
            if value is not None:
                columns[f"{probe.accuracy}_{level}"] = float(value)
    return frame.assign(**columns)


def _level_rules(summary: pd.DataFrame, probe: Probe) -> list:
    """Dotted lines at the probe's random-init and raw-pixel levels, labelled, where `summary` has them."""
    rules = []
    for level, words in LEVELS:
        column = f"{probe.accuracy}_{level}"
        if column not in summary.columns or summary[column].isna().all():
            continue
        at = alt.Chart(pd.DataFrame({column: [float(summary[column].mean())]}))
        rules.append(at.mark_rule(strokeDash=[2, 3], color="#888").encode(y=alt.Y(f"{column}:Q", title=probe.title)))
        rules.append(at.mark_text(align="left", baseline="top", dx=4, dy=3, color="#888", fontSize=10).encode(
            y=alt.Y(f"{column}:Q", title=probe.title), x=alt.value(0), text=alt.value(words)))
    return rules


def _reference_points(reference: pd.DataFrame, family: alt.Parameter) -> alt.Chart:
    """The paper's reported results as hollow diamonds on the k-NN probe's axes (the paper's only probe)."""
    size = _size() if "trainable_params" in reference.columns else alt.value(120)
    return alt.Chart(reference).mark_point(filled=False, shape="diamond", strokeWidth=1.5).encode(
        x=alt.X("new_domain_accuracy:Q", title=X_TITLE), y=alt.Y("pretrain_knn:Q", title=Y_TITLE),
        color=_colour(), size=size, opacity=alt.condition(family, alt.value(0.9), alt.value(0.12)),
        tooltip=[
            alt.Tooltip("label:N", title="paper, reported"),
            alt.Tooltip("new_domain_accuracy:Q", title="new-domain accuracy", format=".2f"),
            alt.Tooltip("pretrain_knn:Q", title="pre-training k-NN", format=".2f"),
        ],
    )


RANKING_PROBE = f"{KNN.words}, the paper's"  # the probe SCORE_EXPR reads, in words


def _ranking(summary: pd.DataFrame, family: alt.Parameter) -> alt.LayerChart:
    # op="max" (one row per label): a layered view can only sort its shared domain by min/max/count.
    y = alt.Y("label:N", title=None, sort=alt.EncodingSortField(field="score", op="max", order="descending"))
    x = alt.X("score:Q", title="score")
    base = alt.Chart(summary).transform_filter(family).transform_calculate(score=SCORE_EXPR)
    bars = base.mark_bar().encode(
        x=x, y=y, color=_colour(),
        tooltip=[alt.Tooltip("label:N", title="method"), alt.Tooltip("score:Q", format=".2f")])
    values = base.mark_text(align="left", dx=3).encode(x=x, y=y, text=alt.Text("score:Q", format=".1f"))
    # Named views give stable SVG class names ("ranking_scores..."), which the browser test reads.
    return alt.layer(bars, values.properties(name="ranking_scores")).properties(
        name="ranking", width=440, height=alt.Step(20),
        title=alt.Title(f"Ranking by score, on {RANKING_PROBE}",
                        subtitle="score = w × pre-training k-NN + (1 − w) × new-domain accuracy"))


STUDY_POINTS = "filled: this study, mean and min-max over seeds"
PANEL_WIDTH = {1: 440, 2: 250, 3: 160}  # panels side by side that fit the book's column
PLANE_TITLE = "What is learnt (x) and what is kept (y)"


def tradeoff_chart(frame: pd.DataFrame, *, reference: pd.DataFrame | None = None, weight: float = 0.5,
                   subtitle: str = STUDY_POINTS):
    """The study's main figure: learning against forgetting, and a ranking that follows a slider.

    Top: one point per configuration (mean over seeds, min-max bars), x = new-domain accuracy,
    y = pre-training-domain k-NN accuracy after fine-tuning, the dashed line the pre-trained
    backbone's accuracy; colour = family, size = trainable parameters (log). Where the frame has the
    linear-head probe's values, a second panel beside it has that probe's accuracy on y (the paper's
    numbers have none: one panel). Bottom: the configurations ranked by `tradeoff_score` (on the k-NN
    probe), re-sorted in the browser as the w slider moves. The family dropdown filters the ranking
    and highlights that family in every panel. `reference` (e.g. `paper_frame()`) adds hollow
    diamonds to the k-NN panel; only the paper preset shares the paper's datasets, so any other
    preset is refused. `weight` is the slider's starting position; `subtitle` says what the filled
    points are (e.g. the paper's reported numbers instead of this study's runs).
    """
    tradeoff_score(0.0, 0.0, weight)  # validates the weight
    _check_reference(frame, reference)
    summary = label_summary(frame)
    families = [f for f in FAMILIES if f in set(summary["family"])]
    family = _family_selection(families)
    w = alt.param(name=WEIGHT_PARAM, value=weight, bind=alt.binding_range(
        min=0, max=1, step=0.05, name="Weight w on the pre-training domain (k-NN probe) "))
    if reference is not None:
        subtitle += "; hollow diamonds: the paper's reported results"
    probes = probes_of(summary)
    if len(probes) == 1:
        top = _points(summary, KNN, family, reference=reference, title=PLANE_TITLE, subtitle=subtitle, width=440)
    else:
        top = alt.hconcat(*(_points(summary, probe, family, reference=reference if probe is KNN else None,
                                    title=f"Kept, by {probe.words}", width=PANEL_WIDTH[len(probes)])
                            for probe in probes)).properties(title=alt.Title(
                                f"{PLANE_TITLE}, by each probe of the pre-training domain",
                                subtitle=f"{subtitle}; the ranking below uses {RANKING_PROBE}"))
    return alt.vconcat(top, _ranking(summary, family)).add_params(w).properties(background=BACKGROUND)


# --- forgetting over training steps -------------------------------------------------------------

def forgetting_curve_frame(records: list[dict]) -> pd.DataFrame:
    """One row per (run, probed step, k): both probes' accuracy on the pre-training domain at that step.

    Records keep these under metrics.knn_over_steps when a run was asked for `forgetting_steps`;
    runs without them contribute no rows. `knn` is the k-NN probe's accuracy at that k;
    `linear_head` the linear-head probe's at that step (the same on every k's row), NaN where the
    record's curve has none (records made before the curves carried it); `instance` the instance-retrieval
    probe's at that k, NaN where not measured. A curve that was not
    probed at step 0 starts from the run's baseline there: before the first update every method
    computes exactly the pre-trained backbone's features (LoRA's B and block expansion's output
    projections start at zero; the tests hold this bit for bit), so the baseline is that step's
    measurement. `probed` tells them apart. That holds only where the curve was probed with the
    final probe; a run whose curve used a smaller probe (config.curve_probe) is drawn from its own
    probes alone.
    """
    rows = []
    for record in records:
        metrics = record["metrics"]
        over = metrics.get("knn_over_steps") or []
        same_probe = record.get("config", {}).get("curve_probe") is None
        if over and same_probe and all(entry["step"] != 0 for entry in over):
            start = {"step": 0, "knn": metrics["knn_baseline"], "probed": False}
            if any("linear_head" in entry for entry in over):
                start["linear_head"] = metrics["linear_head"]["baseline"]
            if any("instance" in entry for entry in over):
                start["instance"] = metrics["instance"]["baseline"]
            over = [start, *over]
        for entry in over:
            for k, accuracy in entry["knn"].items():  # k is a string once the record went through JSON
                rows.append({"run": record["run"], "preset": record["preset"], "label": record["label"],
                             "family": record["family"], "seed": record["seed"], "step": entry["step"],
                             "k": int(k), "knn": accuracy, "linear_head": entry.get("linear_head", math.nan),
                             "instance": (entry.get("instance") or {}).get(k, math.nan),
                             "probed": entry.get("probed", True)})
    return pd.DataFrame(rows, columns=CURVE_FRAME_COLUMNS)


CURVE_FRAME_COLUMNS = ["run", "preset", "label", "family", "seed", "step", "k", "knn", "linear_head", "instance",
                       "probed"]


def _one_preset(presets: set[str]) -> None:
    if len(presets) > 1:
        raise ValueError(f"the records mix presets {sorted(presets)}; plot one preset at a time")


def forgetting_curve_chart(records: list[dict], *, k: int | None = None):
    """Pre-training-domain accuracy against training step, and every method's accuracy at one step.

    Top: one line per run, for the k-NN probe (k in a dropdown) and, beside it, the linear-head
    probe (drawn where the records' curves carry it). Bottom: the mean over seeds at the probe the
    slider picks, for each probe (the slider moves from probe to probe: the probed steps are spaced
    roughly logarithmically), the picked step marked on the curves. Raises ValueError when no record
    was probed during training (run with `forgetting_steps`, CLI `--forgetting-steps`). `k` is the
    dropdown's starting value (default 20 where measured, the largest k otherwise).
    """
    curves = forgetting_curve_frame(records)
    if curves.empty:
        raise ValueError(f"none of the {len(records)} records has k-NN accuracies over training steps "
                         "(metrics.knn_over_steps); run with forgetting_steps=(...), CLI --forgetting-steps")
    _one_preset(set(curves["preset"]))
    ks = sorted(curves["k"].unique().tolist())
    start = k if k is not None else (20 if 20 in ks else ks[-1])
    if start not in ks:
        raise ValueError(f"k={k!r} was not measured over steps; measured: {ks}")
    steps = sorted(curves["step"].unique().tolist())
    curves = curves.assign(probe=curves["step"].map({step: i for i, step in enumerate(steps)}))
    heads = curves.dropna(subset=["linear_head"]).drop_duplicates(["run", "step"])  # the same on every k's row
    instances = curves.dropna(subset=["instance"])
    pick = alt.param(name=K_PARAM, value=start, bind=alt.binding_select(options=ks, name="k-NN neighbours k "))
    at = alt.param(name=STEP_PARAM, value=len(steps) - 1, bind=alt.binding_radio(
        options=list(range(len(steps))), labels=[f"{step:,}" for step in steps], name="Probed after training step "))
    width = PANEL_WIDTH[1 + (not heads.empty) + (not instances.empty)]  # the panels fit the book's column
    x = alt.X("step:Q", title="Training step", scale=alt.Scale(type="symlog"),  # 0, 1, 10, 100 spread evenly
              axis=alt.Axis(values=steps, labelOverlap="greedy", format="~s"))  # the probed steps, 1 to 20 too

    def views(base: alt.Chart, probe: Probe, column: str, bars_name: str):
        """The probe's curves with the picked step marked, and its bars at that step."""
        what = f"{probe.adjective} accuracy"
        lines = base.mark_line(point=True).encode(
            x=x,
            y=alt.Y(f"{column}:Q", title=probe.title, scale=alt.Scale(zero=False)),
            color=alt.Color("label:N", title="Method", legend=alt.Legend(orient="bottom", columns=4)),
            detail="run:N",
            tooltip=["label:N", "seed:Q", "step:Q", alt.Tooltip(f"{column}:Q", title=what, format=".2f")],
        )
        picked = base.transform_filter(f"datum.probe == {STEP_PARAM}")
        rule = picked.mark_rule(color="gray", strokeDash=[4, 3]).encode(x=x)
        bars = picked.transform_aggregate(
            **{column: f"mean({column})"}, step="max(step)", groupby=["label", "family"]).mark_bar().encode(
            x=alt.X(f"{column}:Q", title=f"{what} at the picked step (%), mean over seeds"),
            y=alt.Y("label:N", title=None, sort="-x"),
            color=_colour(),
            tooltip=["label:N", "step:Q", alt.Tooltip(f"{column}:Q", title=what, format=".2f")],
        ).properties(name=bars_name)
        title = "Forgetting during fine-tuning" if heads.empty and instances.empty else f"By {probe.words}"
        return alt.layer(lines, rule).properties(width=width, height=300, title=title), bars, picked

    knn_curves, knn_bars, picked = views(alt.Chart(curves).transform_filter(f"datum.k == {K_PARAM}"), KNN, "knn",
                                         "forgetting_at_step")
    caption = picked.transform_aggregate(step="max(step)").transform_calculate(
        text="'after training step ' + datum.step").mark_text(align="right", baseline="top", fontSize=12).encode(
        text="text:N", x=alt.value(width), y=alt.value(-18))
    top, bottom = [knn_curves], [alt.layer(knn_bars, caption).properties(width=width)]
    if not heads.empty:  # its own name: the browser test reads the k-NN bars by theirs
        head_curves, head_bars, _ = views(alt.Chart(heads), HEAD, "linear_head", "linear_head_at_step")
        top.append(head_curves)
        bottom.append(head_bars.properties(width=width))
    if not instances.empty:
        instance_curves, instance_bars, _ = views(alt.Chart(instances).transform_filter(f"datum.k == {K_PARAM}"),
                                                  INSTANCE, "instance", "instance_at_step")
        top.append(instance_curves)
        bottom.append(instance_bars.properties(width=width))
    # The curves colour by method, the bars by family: two colour scales. Shared (Vega-Lite's default for
    # concatenated views) they merge into one whose domain matches no line, and the lines draw unstroked.
    # Each row keeps its scale shared, so a method has one colour in both probes' curves.
    return alt.vconcat(_side_by_side(top), _side_by_side(bottom)).add_params(pick, at).resolve_scale(
        color="independent").properties(background=BACKGROUND)


# --- the backbone's pre-training ------------------------------------------------------------------

def pretrain_curve_frame(card: dict) -> pd.DataFrame:
    """The card's learning curve: one row per epoch with the loss and the subset k-NN accuracy."""
    epochs = (card.get("learning_curve") or {}).get("epochs") or []
    return pd.DataFrame(epochs, columns=["epoch", "loss", "knn"])


def pretrain_curve_chart(card: dict):
    """k-NN accuracy of the teacher after every pre-training epoch (left) and the DINO loss (right)."""
    frame = pretrain_curve_frame(card)
    if frame.empty:
        raise ValueError("the card has no learning curve (learning_curve.epochs); it predates per-epoch probing")
    x = alt.X("epoch:Q", title="Pre-training epoch", axis=alt.Axis(tickMinStep=1))
    knn = alt.Chart(frame).mark_line(point=True, color=FAMILY_COLOURS["standard"]).encode(
        x=x, y=alt.Y("knn:Q", title="k-NN accuracy, subset probe (%)", scale=alt.Scale(zero=False)),
        tooltip=["epoch:Q", alt.Tooltip("knn:Q", title="k-NN accuracy", format=".2f"),
                 alt.Tooltip("loss:Q", format=".3f")],
    ).properties(width=300, height=220, title="Feature quality")
    loss = alt.Chart(frame).mark_line(point=True, color=FAMILY_COLOURS["LoRA"]).encode(
        x=x, y=alt.Y("loss:Q", title="DINO loss (mean over the epoch)", scale=alt.Scale(zero=False)),
        tooltip=["epoch:Q", alt.Tooltip("loss:Q", format=".3f")],
    ).properties(width=300, height=220, title="Training loss")
    return alt.hconcat(knn, loss).properties(background=BACKGROUND)


# --- static figure for print (seaborn) ----------------------------------------------------------

def tradeoff_figure(frame: pd.DataFrame, *, reference: pd.DataFrame | None = None):
    """The trade-off chart's top view as a static matplotlib Figure (for print and PDF).

    One panel per probe the frame has values for (k-NN, then the linear head), as in the chart.
    Built on a bare Figure, not pyplot, so a notebook cell that returns it shows it once and no
    global figure state piles up across a book build.
    """
    # Imported here: the Sphinx extension imports this module at every build and needs none of it.
    import seaborn as sns
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    _check_reference(frame, reference)
    summary = label_summary(frame)
    probes = probes_of(summary)
    fig = Figure(figsize=(7.5 * len(probes), 5), layout="constrained")
    for ax, probe in zip(fig.subplots(1, len(probes), squeeze=False)[0], probes):
        y = probe.accuracy
        ax.errorbar(summary["new_domain_accuracy"], summary[y],
                    xerr=[summary["new_domain_accuracy"] - summary["new_domain_accuracy_min"],
                          summary["new_domain_accuracy_max"] - summary["new_domain_accuracy"]],
                    yerr=[summary[y] - summary[f"{y}_min"], summary[f"{y}_max"] - summary[y]],
                    fmt="none", ecolor="0.65", elinewidth=1, zorder=1)
        sns.scatterplot(data=summary, x="new_domain_accuracy", y=y, hue="family",
                        hue_order=[f for f in FAMILIES if f in set(summary["family"])], palette=FAMILY_COLOURS,
                        size="trainable_params", size_norm=LogNorm(), sizes=(30, 300), ax=ax, zorder=2,
                        legend="auto" if probe is KNN else False)
        for row in summary.itertuples():
            ax.annotate(row.label, (row.new_domain_accuracy, getattr(row, y)), xytext=(5, 4),
                        textcoords="offset points", fontsize=8)
        if reference is not None and probe is KNN:  # the paper reports the k-NN probe only
            ax.scatter(reference["new_domain_accuracy"], reference["pretrain_knn"], marker="D", facecolors="none",
                       edgecolors=[FAMILY_COLOURS[f] for f in reference["family"]], label="paper (reported)", zorder=2)
        ax.axhline(summary[probe.baseline].mean(), color="0.3", linestyle="--", linewidth=1,
                   label="pre-trained (no forgetting)")
        ax.set(xlabel=X_TITLE, ylabel=probe.title, title=f"Kept, by {probe.words}" if len(probes) > 1 else "")
        if probe is KNN:
            handles, labels = ax.get_legend_handles_labels()
            ax.legend(handles, [_legend_text(text) for text in labels], fontsize=8, loc="best")
    return fig


def _legend_text(text: str) -> str:
    """Seaborn titles its legend sections by column name and prints raw counts: make them readable."""
    titles = {"family": "Family", "trainable_params": "Trainable parameters"}
    if text in titles:
        return titles[text]
    try:
        return summary_count(int(float(text)))
    except ValueError:
        return text


# --- offline Vega for the built book -------------------------------------------------------------

def _vegalite_version() -> str:
    """Altair's Vega-Lite (major.minor) when vl-convert ships it, else vl-convert's newest.

    Specs are forward compatible within a major version, so a newer runtime is the safe fallback.
    """
    import vl_convert as vlc

    wanted = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    available = vlc.get_vegalite_versions()
    return wanted if wanted in available else available[-1]


@functools.cache
def _vega_bundle() -> str:
    """Vega, Vega-Lite and vega-embed in one script with no external dependency.

    It defines window.vegaEmbed, window.vega and window.vegaLite and nothing else: vl-convert emits
    module code with top-level `const` names (`_` among them) that, loaded as a classic script,
    would share the page's global scope and collide with Sphinx's own `const _` (a SyntaxError
    that loses the whole bundle), so it is wrapped in a function. It uses no module loader, so
    require.js on the same page does not interfere. Building it takes a few seconds: cached.
    """
    import vl_convert as vlc

    version = _vegalite_version()
    header = (f"/* {BUNDLE_NAME}: Vega {vlc.get_vega_version()}, Vega-Lite {version}, vega-embed "
              f"{vlc.get_vega_embed_version()}, bundled by vl-convert-python for vitcf.book.plots.embed */\n")
    return f"{header}(function () {{\n{vlc.javascript_bundle(vl_version=version)}\n}})();\n"


def write_vega_bundle(static_dir: str | os.PathLike) -> Path:
    """Write the bundle as `static_dir`/vitcf-vega.js; an identical file is left untouched.

    Leaving it untouched keeps its timestamp, so incremental builds and browser caches see no change.
    The write goes through a temporary file and a rename, so a crash never leaves half a script
    (and a parallel build never reads one).
    """
    return write_static(Path(static_dir) / BUNDLE_NAME, _vega_bundle())


def write_static(path: Path, text: str) -> Path:
    """Write `text` to `path` atomically (a temporary file, then a rename); an identical file is left as is."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a web server must be able to read it
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


_EMBED_OPTIONS = {
    "mode": "vega-lite",
    "renderer": "svg",  # text stays text: searchable, selectable, and crisp when zoomed
    # Export (SVG/PNG) works offline; the source, compiled and editor actions open web pages.
    "actions": {"export": True, "source": False, "compiled": False, "editor": False},
}

_EMBED_SCRIPT = """(function () {
  var element = document.getElementById("@ID@");
  var spec = @SPEC@;
  function draw() {
    if (typeof window.vegaEmbed !== "function") {
      element.textContent = "This chart needs the book's local Vega bundle (@BUNDLE@), which is not loaded here. " +
        "In Jupyter, display the Altair chart object itself.";
      return;
    }
    window.vegaEmbed(element, spec, @OPTIONS@).catch(function (error) {
      element.textContent = "The chart failed to render: " + error;
      console.error(error);
    });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", draw); } else { draw(); }
})();"""

_EMBED_COUNT = itertools.count()


def _script_json(data) -> str:
    """JSON that is safe inside a <script> element ('</script>' or '<!--' in a label cannot end it)."""
    return json.dumps(data, sort_keys=True).replace("<", "\\u003c")


def embed(chart):
    """An HTML display of `chart` that draws with the book's local Vega bundle: no CDN, no kernel.

    The output is a div and an inline script calling window.vegaEmbed, which the page gets from
    vitcf-vega.js (see the module docstring). The spec's $schema (a URL, used only to guess the
    mode) is dropped and the mode given instead, so the page names no remote address at all.
    """
    from IPython.display import HTML

    spec = chart.to_dict()
    spec.pop("$schema", None)
    payload = _script_json(spec)
    # Deterministic ids keep rebuilt pages identical; the counter separates repeated charts.
    element = f"{CHART_CLASS}-{hashlib.sha256(payload.encode()).hexdigest()[:12]}-{next(_EMBED_COUNT)}"
    script = (_EMBED_SCRIPT.replace("@ID@", element).replace("@BUNDLE@", BUNDLE_NAME)
              .replace("@OPTIONS@", _script_json(_EMBED_OPTIONS)).replace("@SPEC@", payload))
    return HTML(f'<div id="{element}" class="{CHART_CLASS}"></div>\n'
                f'<script type="text/javascript">\n{script}\n</script>')


# --- live explorer for Jupyter (needs a kernel) ---------------------------------------------------

def _ranking_html(ranking: pd.DataFrame) -> str:
    head = [HEAD.accuracy] if has_head(ranking) else []
    shown = ranking[["rank", "label", "family", "new_domain_accuracy", "pretrain_knn", *head, "score"]].rename(columns={
        "new_domain_accuracy": "new-domain acc.", "pretrain_knn": "pre-training k-NN",
        HEAD.accuracy: "pre-training linear head"})
    return shown.to_html(index=False, float_format="{:.2f}".format, border=0)


def explorer(frame: pd.DataFrame, *, weight: float = 0.5):
    """ipywidgets for a live kernel: a w slider and a family dropdown re-rank the methods in a table.

    The score reads the k-NN probe, as the chart's does; the table shows the linear head beside it.

    The static book cannot run these callbacks (use `tradeoff_chart` there); in Jupyter, Binder or
    Colab they can. The table is `rank_methods` at the widgets' values, so it matches the chart.
    """
    import ipywidgets as widgets

    summary = label_summary(frame)
    tradeoff_score(0.0, 0.0, weight)
    families = [f for f in FAMILIES if f in set(summary["family"])]
    slider = widgets.FloatSlider(value=weight, min=0, max=1, step=0.05, description="w", readout_format=".2f")
    dropdown = widgets.Dropdown(options=["all", *families], value="all", description="family")
    table = widgets.HTML()

    def show(change=None) -> None:
        family = None if dropdown.value == "all" else dropdown.value
        table.value = _ranking_html(rank_methods(frame, slider.value, family))

    slider.observe(show, names="value")
    dropdown.observe(show, names="value")
    show()
    return widgets.VBox([widgets.HBox([slider, dropdown]), table])


# --- analyses beyond the paper ---------------------------------------------------------------------

ALPHA_PARAM = "alpha_pick"


def _head_of(scores: dict) -> float:
    """The linear-head probe's accuracy in an analysis record's scores (NaN in a record without it)."""
    return scores.get("linear_head", math.nan)


def interpolation_frame(records: list[dict], k: int = 20) -> pd.DataFrame:
    """One row per (interpolation record, alpha): the new domain's accuracy and both probes' of the
    pre-training domain (`pretrain_knn`, `linear_head_after`) along the curve."""
    rows = []
    for record in records:
        for point in record["points"]:
            knn = {int(key): value for key, value in point["knn"].items()}
            if k not in knn:
                raise ValueError(f"interpolation record {record['run']} has no k-NN result for k={k}; it has {sorted(knn)}")
            rows.append({"run": record["run"], "preset": record["preset"], "label": record["label"],
                         "family": record["family"], "seed": record["seed"], "alpha": point["alpha"],
                         "new_domain_accuracy": point["new_domain_accuracy"], "pretrain_knn": knn[k],
                         "linear_head_after": _head_of(point)})
    return pd.DataFrame(rows, columns=["run", "preset", "label", "family", "seed", "alpha", "new_domain_accuracy",
                                       "pretrain_knn", "linear_head_after"])


def interpolation_chart(records: list[dict], frame: pd.DataFrame | None = None, *, k: int = 20, alpha: float = 1.0):
    """Each interpolation run as a curve in the trade-off plane, a slider marking one mixing weight.

    One panel per probe of the pre-training domain: the k-NN probe and, beside it, the linear head
    (where the records carry it). `frame` (records_frame of the same preset) adds the study's fixed
    points (mean over seeds) so the curves can be set against the methods of the paper. The slider
    picks alpha; every curve shows its point at that alpha.
    """
    curves = interpolation_frame(records, k)
    if curves.empty:
        raise ValueError("no interpolation records to plot (vitcf.engine.analyses.interpolation writes them)")
    presets = set(curves["preset"]) | (set(frame["preset"]) if frame is not None and "preset" in frame else set())
    _one_preset(presets)
    alphas = sorted(curves["alpha"].unique().tolist())
    if alpha not in alphas:
        raise ValueError(f"alpha={alpha!r} was not measured; measured: {alphas}")
    step = min((b - a for a, b in zip(alphas, alphas[1:])), default=1.0)
    pick = alt.param(name=ALPHA_PARAM, value=alpha, bind=alt.binding_range(
        min=alphas[0], max=alphas[-1], step=step, name="Mixing weight alpha (0: pre-trained, 1: fine-tuned) "))
    summary = label_summary(frame) if frame is not None else None
    probes = PROBES if has_head(curves, (HEAD.accuracy,)) else (KNN,)
    x = alt.X("new_domain_accuracy:Q", title=X_TITLE, scale=alt.Scale(zero=False))

    def panel(probe: Probe, marked_name: str) -> alt.LayerChart:
        y = alt.Y(f"{probe.accuracy}:Q", title=probe.title, scale=alt.Scale(zero=False))
        base = alt.Chart(curves.dropna(subset=[probe.accuracy]))
        lines = base.mark_line(point=alt.OverlayMarkDef(size=25)).encode(
            x=x, y=y, color=alt.Color("label:N", title="Interpolated run"), detail="run:N", order="alpha:Q",
            tooltip=["label:N", alt.Tooltip("alpha:Q", format=".2f"),
                     alt.Tooltip("new_domain_accuracy:Q", title="new-domain accuracy", format=".2f"),
                     alt.Tooltip(f"{probe.accuracy}:Q", title=f"pre-training, {probe.words}", format=".2f")])
        marked = base.transform_filter(f"abs(datum.alpha - {ALPHA_PARAM}) < 1e-9").mark_point(
            size=180, filled=True, stroke="black").encode(x=x, y=y,
                                                          color=alt.Color("label:N", title="Interpolated run"))
        layers = [lines, marked.properties(name=marked_name)]
        if summary is not None and probe.accuracy in summary.columns:
            layers.insert(0, alt.Chart(summary).mark_point(shape="diamond", size=70, color="gray").encode(
                x=x, y=y, tooltip=[alt.Tooltip("label:N", title="fine-tuning method")]))
            layers.insert(1, alt.Chart(summary).mark_text(align="left", dx=6, fontSize=9, color="gray").encode(
                x=x, y=y, text="label:N"))
        title = "" if len(probes) == 1 else f"Kept, by {probe.words}"
        return alt.layer(*layers).properties(width=440 if len(probes) == 1 else 250, height=320, title=title)

    # The k-NN view keeps its name: the browser test reads its marked points.
    panels = [panel(KNN, "interpolation_marked")] + ([panel(HEAD, "head_marked")] if HEAD in probes else [])
    return _side_by_side(panels).add_params(pick).properties(
        background=BACKGROUND, title=alt.Title("Interpolating back to the pre-trained weights",
                                               subtitle="curves: alpha from 0 to 1; grey diamonds: the methods' "
                                                        "own runs"))


def reversibility_frame(records: list[dict], k: int = 20) -> pd.DataFrame:
    """One row per (reversibility record, state): the new domain's accuracy and, for both probes of the
    pre-training domain, the accuracy, the baseline and the drop (NaN for the linear head in a record
    without it)."""
    rows = []
    for record in records:
        base = {int(key): value for key, value in record["baseline"]["knn"].items()}
        head_base = _head_of(record["baseline"])
        for state, scores in record["states"].items():
            knn = {int(key): value for key, value in scores["knn"].items()}
            rows.append({"run": record["run"], "label": record["label"], "seed": record["seed"], "state": state,
                         "new_domain_accuracy": scores["new_domain_accuracy"], "pretrain_knn": knn[k],
                         "pretrain_knn_baseline": base[k], "drop": base[k] - knn[k],
                         "linear_head_after": _head_of(scores), "linear_head_baseline": head_base,
                         "linear_head_drop": head_base - _head_of(scores)})
    return pd.DataFrame(rows, columns=["run", "label", "seed", "state", "new_domain_accuracy", "pretrain_knn",
                                       "pretrain_knn_baseline", "drop", "linear_head_after", "linear_head_baseline",
                                       "linear_head_drop"])


def drift_frame(records: list[dict]) -> pd.DataFrame:
    """One row per (run, pre-trained block): linear CKA with the pre-trained backbone (metrics.drift)."""
    rows = []
    for record in records:
        cka = (record["metrics"].get("drift") or {}).get("cka_per_block") or []
        rows += [{"run": record["run"], "preset": record["preset"], "label": record["label"], "family": record["family"],
                  "seed": record["seed"], "block": i + 1, "cka": value} for i, value in enumerate(cka)]
    return pd.DataFrame(rows, columns=["run", "preset", "label", "family", "seed", "block", "cka"])


def drift_chart(records: list[dict]):
    """Where each method changed the network: CKA with the pre-trained backbone after every block.

    One line per configuration (mean over its seeds); the family dropdown highlights one family.
    """
    frame = drift_frame(records)
    if frame.empty:
        raise ValueError(f"none of the {len(records)} records measured representation drift (metrics.drift)")
    _one_preset(set(frame["preset"]))
    mean = frame.groupby(["label", "family", "block"], as_index=False)["cka"].mean()
    families = [f for f in FAMILIES if f in set(mean["family"])]
    family = _family_selection(families)
    return alt.Chart(mean).mark_line(point=True).encode(
        x=alt.X("block:Q", title="After pre-trained block", axis=alt.Axis(tickMinStep=1)),
        y=alt.Y("cka:Q", title="Linear CKA with the pre-trained backbone", scale=alt.Scale(zero=False)),
        color=alt.Color("label:N", title="Method"),
        opacity=alt.condition(family, alt.value(0.95), alt.value(0.12)),
        tooltip=["label:N", "block:Q", alt.Tooltip("cka:Q", format=".4f")],
    ).add_params(family).properties(width=440, height=300, background=BACKGROUND,
                                    title=alt.Title("Where fine-tuning changed the representation",
                                                    subtitle="1: unchanged up to rotation and scale"))


# --- the design space around the paper's rows ------------------------------------------------------

DESIGN_PARAM = "design_axis"
DESIGN_AXES = {  # method -> (axis title, the hyperparameter along it, the one telling series apart)
    "lora": ("LoRA: rank r", "r", "target"),
    "top_k": ("Top-k: blocks trained k", "k", None),
    "block_expansion": ("Block expansion: copies p", "p", "placement"),
    "surgical": ("Surgical: block trained", "block", None),
}
SERIES_NAMES = {"qv": "q, v (paper)", "qkv": "fused qkv", "all": "every linear layer",
                "spread": "spread (paper)", "top": "stacked on top"}


def _probe_values(metrics: dict, k: int) -> dict[str, float]:
    """A record's accuracy and drop by each probe it carries, under each `Probe`'s column names."""
    knn = {int(key): value for key, value in metrics["knn"].items()}
    base = {int(key): value for key, value in metrics["knn_baseline"].items()}
    values = {KNN.accuracy: knn[k], KNN.drop: base[k] - knn[k],
              HEAD.accuracy: metrics["linear_head"]["after"],
              HEAD.drop: metrics["linear_head"]["baseline"] - metrics["linear_head"]["after"],
              INSTANCE.accuracy: math.nan, INSTANCE.drop: math.nan}
    instance = metrics.get("instance") or {}
    if instance.get("after") and instance.get("baseline"):  # older records have no instance probe
        after, before = instance["after"][str(k)], instance["baseline"][str(k)]
        values |= {INSTANCE.accuracy: after, INSTANCE.drop: before - after}
    return values


# design_frame's spread column of each probe's accuracy (the k-NN and head names predate the third probe).
DESIGN_SD = {KNN.name: "pretrain_knn_sd", HEAD.name: "linear_head_sd", INSTANCE.name: "instance_sd"}


def design_frame(runs: list[dict], k: int = 20) -> pd.DataFrame:
    """One row per design-space configuration (mean and sd over seeds) on its axis of the design space.

    Every probe of the pre-training domain: each probe's accuracy, its sd over seeds (`DESIGN_SD`)
    and its drop, under the probe's `Probe` column names (k-NN: `pretrain_knn`, `drop`); the instance
    probe's hold NaN for records made before it. Records of methods with no design axis (full,
    linear) are left out; so is nothing else. A series mixing learning rates would compare two
    things at once, so it is an error.
    """
    from vitcf.model.methods import make_method

    rows = []
    for record in runs:
        if record["method"] not in DESIGN_AXES:
            continue
        axis, along, split = DESIGN_AXES[record["method"]]
        config = make_method(record["method"], **record["hparams"])
        series = getattr(config, split) if split else "-"
        value = getattr(config, along) + (along == "block")  # blocks counted from 1
        rows.append({"axis": axis, "value": value, "series": SERIES_NAMES.get(series, series),
                     "label": config.label, "family": record["family"], "seed": record["seed"],
                     "lr": record["config"]["train"]["lr"], "trainable_params": record["trainable_params"],
                     "new_domain_accuracy": record["metrics"]["new_domain_accuracy"],
                     **_probe_values(record["metrics"], k)})
    probe_columns = [column for probe in PROBES for column in (probe.accuracy, DESIGN_SD[probe.name], probe.drop)]
    columns = ["axis", "value", "series", "label", "family", "lr", "trainable_params", "seeds",
               "new_domain_accuracy", "new_domain_sd", *probe_columns]
    if not rows:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(rows)
    lrs = frame.groupby(["axis", "series"])["lr"].nunique()
    if (lrs > 1).any():
        mixed = [f"{axis} / {series}" for axis, series in lrs[lrs > 1].index]
        raise ValueError(f"design-space series {mixed} mix learning rates; compare one rate per series")
    grouped = frame.groupby(["axis", "value", "series", "label", "family", "lr", "trainable_params"], as_index=False)
    aggregates = {"seeds": ("seed", "nunique"), "new_domain_accuracy": ("new_domain_accuracy", "mean"),
                  "new_domain_sd": ("new_domain_accuracy", "std")}
    for probe in PROBES:
        aggregates |= {probe.accuracy: (probe.accuracy, "mean"), DESIGN_SD[probe.name]: (probe.accuracy, "std"),
                       probe.drop: (probe.drop, "mean")}
    summary = grouped.agg(**aggregates)
    order = {title: i for i, (title, _, _) in enumerate(DESIGN_AXES.values())}
    return summary.sort_values(["axis", "series", "value"], key=lambda c: c.map(order) if c.name == "axis" else c,
                               ignore_index=True)[columns]


def _baseline_rule(value: float) -> alt.Chart:
    """A dashed rule at the backbone's accuracy before fine-tuning."""
    return alt.Chart(pd.DataFrame({"baseline": [value]})).mark_rule(strokeDash=[4, 3], color="gray").encode(
        y="baseline:Q", tooltip=[alt.Tooltip("baseline:Q", title="before fine-tuning", format=".2f")])


def before_finetuning(baseline: dict | None, k: int = 20) -> dict[str, float]:
    """The pre-trained backbone's accuracy by each probe its folder's baseline record holds, by probe name."""
    if not baseline:
        return {}
    before = {KNN.name: baseline["knn"][str(k)]}
    if baseline.get("linear_head") is not None:
        before[HEAD.name] = baseline["linear_head"]
    if (baseline.get("instance") or {}).get(str(k)) is not None:
        before[INSTANCE.name] = baseline["instance"][str(k)]
    return before


DESIGN_WIDTH = 250  # two panels to a row fit the book's column


def design_chart(frame: pd.DataFrame, *, before: dict[str, float] | None = None, axis: str | None = None):
    """Both domains' accuracy along one axis of the design space, the axis picked in a dropdown.

    `frame` is `design_frame`'s, optionally `with_levels` (the random-init and raw-pixel levels,
    drawn dotted on each probe's panel). Panels, two to a row: the new domain, then the pre-training
    domain by each probe the frame has values for. `before` maps a probe's name to the backbone's
    accuracy before fine-tuning (`before_finetuning`), drawn dashed on that probe's panel. Points are
    means over seeds; hover for the spread.
    """
    if frame.empty:
        raise ValueError("no design-space records to plot (vitcf sweep --grid design writes them)")
    axes = [title for title, _, _ in DESIGN_AXES.values() if title in set(frame["axis"])]
    start = axis if axis is not None else axes[0]
    if start not in axes:
        raise ValueError(f"axis {axis!r} has no records; recorded: {axes}")
    before = before or {}
    pick = alt.param(name=DESIGN_PARAM, value=start, bind=alt.binding_select(options=axes, name="Design axis "))
    base = alt.Chart(frame).transform_filter(f"datum.axis == {DESIGN_PARAM}")
    x = alt.X("value:O", title="value along the picked axis", sort="ascending")
    probes = [probe for probe in PROBES if measured(frame, probe, (probe.accuracy, probe.drop))]
    tooltip = ["label:N", "series:N", alt.Tooltip("lr:Q", title="learning rate"),
               alt.Tooltip("trainable_params:Q", title="trainable parameters", format=","),
               alt.Tooltip("seeds:Q", title="seeds"),
               alt.Tooltip("new_domain_accuracy:Q", title="new domain (mean)", format=".2f"),
               alt.Tooltip("new_domain_sd:Q", title="new domain (sd)", format=".2f")]
    for probe in probes:
        tooltip += [alt.Tooltip(f"{probe.accuracy}:Q", title=f"{probe.adjective} accuracy (mean)", format=".2f"),
                    alt.Tooltip(f"{DESIGN_SD[probe.name]}:Q", title=f"{probe.adjective} accuracy (sd)", format=".2f"),
                    alt.Tooltip(f"{probe.drop}:Q", title=f"{probe.adjective} drop (mean)", format=".2f")]
    colour = alt.Color("series:N", title="Variant", legend=alt.Legend(orient="top"))  # under the title: fits the column

    def panel(column: str, title: str, probe: Probe | None) -> alt.Chart:
        line = base.mark_line(point=alt.OverlayMarkDef(size=50)).encode(
            x=x, y=alt.Y(f"{column}:Q", title=title, scale=alt.Scale(zero=False)), color=colour, tooltip=tooltip,
        ).properties(width=DESIGN_WIDTH, height=220)
        if probe is None:
            return line
        layers = [line, *_level_rules(frame, probe)]
        if before.get(probe.name) is not None:
            layers.append(_baseline_rule(before[probe.name]))
        return alt.layer(*layers)

    panels = [panel("new_domain_accuracy", X_TITLE, None),
              *(panel(probe.accuracy, probe.title, probe) for probe in probes)]
    rows = [alt.hconcat(*panels[i:i + 2]) for i in range(0, len(panels), 2)]
    return alt.vconcat(*rows).add_params(pick).properties(
        background=BACKGROUND, title=alt.Title("The design space around the paper's rows",
                                               subtitle="means over seeds; dashed: the backbone before fine-tuning; "
                                                        "dotted: random-init network and raw pixels"))
