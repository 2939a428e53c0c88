"""The study's interactive Altair charts of what each configuration ended with, one chart a view of the page.

The trade-off plane and its ranking, the design space, the headline's intervals, the near and far
domains, and every pair of configurations.

The published book has no kernel, so its interactivity has to run in the reader's browser: the
trade-off chart is Vega-Lite, with a slider (the weight w between stability and plasticity) and a
family dropdown bound to Vega-Lite parameters; `vitcf.book.site.embed` draws a chart in a page with the
book's local Vega bundle. Several seeds of one configuration are shown as one point (their mean) with
min-max bars: the question is how methods compare, and the spread says how far a single run can be
trusted. Every view that shows what was kept shows each probe of the pre-training domain side by side.
Charts over training steps and of the analyses are in `vitcf.book.curve_charts`, the axes' in
`vitcf.book.axis_charts`.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from vitcf.book.frames import DESIGN_AXES, DESIGN_SD, FAR, LEARNT, NEAR, domains_frame
from vitcf.book.stats import (
    FAMILIES,
    FAMILY_COLOURS,
    HEAD,
    INSTANCE,
    KNN,
    LEVELS,
    PROBES,
    Probe,
    check_reference,
    label_summary,
    measured,
    probes_of,
    tradeoff_score,
)


WEIGHT_PARAM = "w"
# The ranking score as Vega evaluates it in the browser; `tradeoff_score` is the same in Python.
SCORE_EXPR = f"{WEIGHT_PARAM} * datum.pretrain_knn + (1 - {WEIGHT_PARAM}) * datum.new_domain_accuracy"
FAMILY_PARAM = "family_pick"


# Opaque, so black axis text stays readable when the book is switched to its dark theme.
BACKGROUND = "white"
X_TITLE = "New-domain accuracy (%)"
PANEL_WIDTH = {1: 440, 2: 250, 3: 160}  # panels side by side that fit the book's column
PAIR_WIDTH = 250  # two panels to a row fit the book's column


def side_by_side(charts: list):
    """One chart as it is, several in a row."""
    return charts[0] if len(charts) == 1 else alt.hconcat(*charts)


# --- the interactive trade-off chart (Vega-Lite) --------------------------------------------------

def family_colour() -> alt.Color:
    """Colour by method family, in the paper's family order and colours."""
    return alt.Color("family:N", title="Family",
                     scale=alt.Scale(domain=list(FAMILIES), range=[FAMILY_COLOURS[f] for f in FAMILIES]))


def _size() -> alt.Size:
    # Trainable counts span three orders of magnitude (a linear head to the full ViT): log scale.
    return alt.Size("trainable_params:Q", title="Trainable parameters",
                    scale=alt.Scale(type="log", range=[30, 400]), legend=alt.Legend(format="~s"))


def family_selection(families: list[str]) -> alt.Parameter:
    """A dropdown picking one of `families` (or all), as a Vega-Lite selection on the family field."""
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
        x=x, y=y, color=family_colour(), size=_size(), opacity=highlight,
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
        y=alt.Y(f"{probe.accuracy}:Q", title=probe.title), color=family_colour(), opacity=highlight)
    y_spread = spread.mark_rule().encode(
        x=alt.X("new_domain_accuracy:Q", title=X_TITLE), y=alt.Y(f"{probe.accuracy}_min:Q", title=probe.title),
        y2=f"{probe.accuracy}_max:Q", color=family_colour(), opacity=highlight)
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
        x=alt.X("new_domain_accuracy:Q", title=X_TITLE), y=alt.Y("pretrain_knn:Q", title=KNN.title),
        color=family_colour(), size=size, opacity=alt.condition(family, alt.value(0.9), alt.value(0.12)),
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
        x=x, y=y, color=family_colour(),
        tooltip=[alt.Tooltip("label:N", title="method"), alt.Tooltip("score:Q", format=".2f")])
    values = base.mark_text(align="left", dx=3).encode(x=x, y=y, text=alt.Text("score:Q", format=".1f"))
    # Named views give stable SVG class names ("ranking_scores..."), which the browser test reads.
    return alt.layer(bars, values.properties(name="ranking_scores")).properties(
        name="ranking", width=440, height=alt.Step(20),
        title=alt.Title(f"Ranking by score, on {RANKING_PROBE}",
                        subtitle="score = w × pre-training k-NN + (1 − w) × new-domain accuracy"))


STUDY_POINTS = "filled: this study, mean and min-max over seeds"


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
    and highlights that family in every panel. `reference` (e.g. `frames.paper_frame()`) adds hollow
    diamonds to the k-NN panel; only the paper preset shares the paper's datasets, so any other
    preset is refused. `weight` is the slider's starting position; `subtitle` says what the filled
    points are (e.g. the paper's reported numbers instead of this study's runs).
    """
    tradeoff_score(0.0, 0.0, weight)  # validates the weight
    check_reference(frame, reference)
    summary = label_summary(frame)
    families = [f for f in FAMILIES if f in set(summary["family"])]
    family = family_selection(families)
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


# --- the design space around the paper's rows ------------------------------------------------------

DESIGN_PARAM = "design_axis"


def _baseline_rule(value: float) -> alt.Chart:
    """A dashed rule at the backbone's accuracy before fine-tuning."""
    return alt.Chart(pd.DataFrame({"baseline": [value]})).mark_rule(strokeDash=[4, 3], color="gray").encode(
        y="baseline:Q", tooltip=[alt.Tooltip("baseline:Q", title="before fine-tuning", format=".2f")])


def design_chart(frame: pd.DataFrame, *, before: dict[str, float] | None = None, axis: str | None = None):
    """Both domains' accuracy along one axis of the design space, the axis picked in a dropdown.

    `frame` is `frames.design_frame`'s, optionally `frames.with_levels` (the random-init and raw-pixel levels,
    drawn dotted on each probe's panel). Panels, two to a row: the new domain, then the pre-training
    domain by each probe the frame has values for. `before` maps a probe's name to the backbone's
    accuracy before fine-tuning (`frames.before_finetuning`), drawn dashed on that probe's panel. Points are
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
        ).properties(width=PAIR_WIDTH, height=220)
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


# --- the headline, the near and far domains, every pair --------------------------------------------------

HEADLINE_WIDTH = 150  # three panels and the configuration names fit the book's 688 px column


def headline_chart(frame: pd.DataFrame):
    """`frames.headline_frame` as dots with their 95% intervals: one row per configuration, one panel per measure
    (drops with a rule at zero: an interval across it is a drop the probe cannot tell from none)."""
    if frame.empty:
        raise ValueError("no per-query correctness in these records to draw the headline from")
    order = list(dict.fromkeys(frame["label"]))
    measures = list(dict.fromkeys(frame["measure"]))
    families = [f for f in FAMILIES if f in set(frame["family"])]
    colour = alt.Color("family:N", title="Family", legend=alt.Legend(orient="bottom"),
                       scale=alt.Scale(domain=families, range=[FAMILY_COLOURS[f] for f in families]))
    panels = []
    for i, measure in enumerate(measures):
        part = alt.Chart(frame[frame["measure"] == measure])
        y = alt.Y("label:N", sort=order, title=None, axis=alt.Axis(labels=i == 0, ticks=i == 0, labelLimit=110))
        x = alt.X("value:Q", title=measure, scale=alt.Scale(zero=False))
        tooltip = [alt.Tooltip("label:N", title="configuration"), alt.Tooltip("interval:N", title=measure),
                   alt.Tooltip("seeds:Q", title="seeds")]
        layers = [part.mark_rule(strokeWidth=2).encode(x=alt.X("low:Q", title=measure), x2="high:Q", y=y,
                                                       color=colour, tooltip=tooltip),
                  part.mark_point(filled=True, size=60).encode(x=x, y=y, color=colour, tooltip=tooltip)]
        if measure != LEARNT:
            layers.insert(0, alt.Chart(pd.DataFrame({"zero": [0.0]})).mark_rule(color="#888", strokeDash=[3, 3])
                          .encode(x="zero:Q"))
        panels.append(alt.layer(*layers).properties(width=HEADLINE_WIDTH, height=alt.Step(18)))
    return alt.hconcat(*panels, spacing=8).properties(
        background=BACKGROUND, title=alt.Title(
            "What each configuration learnt and forgot",
            subtitle="dots: means over seeds; lines: 95% paired bootstrap intervals; dashed: no drop"))


PROBE_PICK = "domain_probe"


def domains_chart(far: pd.DataFrame, near: pd.DataFrame):
    """Each configuration's drop on the near and the far domain, one probe at a time (a dropdown)."""
    frame = domains_frame(far, near)
    probes = list(dict.fromkeys(frame["probe"]))
    pick = alt.param(name=PROBE_PICK, value=probes[0],
                     bind=alt.binding_select(options=probes, name="Probe of the pre-training domain "))
    order = list(dict.fromkeys(frame["label"]))
    base = alt.Chart(frame).transform_filter(f"datum.probe == {PROBE_PICK}")
    bars = base.mark_bar().encode(
        y=alt.Y("label:N", title=None, sort=order),
        yOffset=alt.YOffset("domain:N", sort=[NEAR, FAR]),
        x=alt.X("drop:Q", title="Drop on the pre-training domain (points)"),
        color=alt.Color("domain:N", title="New domain", sort=[NEAR, FAR],
                        scale=alt.Scale(range=["#bab0ac", "#4c78a8"]), legend=alt.Legend(orient="bottom")),
        tooltip=["label:N", "domain:N", "probe:N", alt.Tooltip("drop:Q", format=".2f"),
                 alt.Tooltip("new_domain_accuracy:Q", title="new-domain accuracy", format=".2f")],
    )
    return bars.add_params(pick).properties(
        width=440, height=alt.Step(9), background=BACKGROUND, name="domains_bars",
        title=alt.Title("Forgetting on the near and on the far new domain",
                        subtitle="means over seeds; pick the probe below"))


METRIC_PARAM = "metric_pick"


def pairwise_chart(frame: pd.DataFrame, labels: list[str]):
    """A heatmap per metric (a dropdown picks it): each cell is row minus column; a number is written where
    the difference holds after Holm's correction (p < 0.05), an empty cell is not shown to differ."""
    if frame.empty:
        raise ValueError("no pairwise comparisons: the records carry no per-query correctness")
    metrics = list(dict.fromkeys(frame["metric"]))
    pick = alt.param(METRIC_PARAM, value=metrics[0],
                     bind=alt.binding_select(options=metrics, name="Compare by "))
    base = alt.Chart(frame).transform_filter(alt.datum.metric == pick).encode(
        x=alt.X("b:N", sort=labels, title=None, axis=alt.Axis(labelAngle=-45)),
        y=alt.Y("a:N", sort=labels, title=None),
    )
    cells = base.mark_rect().encode(
        # the scale follows the picked measure (its own range, white at 0): a k-NN drop's few points stay visible
        color=alt.Color("difference:Q", title="row − column (points)",
                        scale=alt.Scale(scheme="redblue", reverse=True, domainMid=0),
                        legend=alt.Legend(orient="bottom", gradientLength=200)),
        opacity=alt.condition(alt.datum.differs, alt.value(1.0), alt.value(0.35)),
        tooltip=["a", "b", alt.Tooltip("difference:Q", format=".2f"), alt.Tooltip("low:Q", format=".2f"),
                 alt.Tooltip("high:Q", format=".2f"), alt.Tooltip("p_holm:Q", format=".3f", title="p (Holm)")],
    )
    text = base.mark_text(fontSize=9).encode(text="text:N")
    side = 26 * len(labels)  # ten configurations fit a phone's width with their names
    return (cells + text).add_params(pick).properties(width=side, height=side, name="pairwise")
