"""Altair charts of what the comparison depends on: the learning rate, the schedule length, the resolution.

Each family is drawn on every probe of the pre-training domain the records carry.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from vitcf.book.charts import BACKGROUND, PAIR_WIDTH, PANEL_WIDTH
from vitcf.book.evidence import NEW_DOMAIN, RESOLUTION_PROBES
from vitcf.book.stats import AXIS_LABELS, KNN, axis_summary, index_of, probes_of


RATE_PARAM = "rate_pick"
LENGTH_PARAM = "length_pick"


LABEL_COLOURS = alt.Scale(domain=list(AXIS_LABELS), range=["#1f3b73", "#4c78a8", "#9ecae9", "#f58518", "#54a24b"])
SMALL_WIDTH = {1: 200, 2: 150, 3: 112}  # the small panels below the big ones, by the number of probes


def _long(summary: pd.DataFrame, by: str) -> pd.DataFrame:
    """`summary` with one row per probe: accuracy kept and drop (points) under `probe`."""
    parts = [summary.assign(probe=p.name, kept=summary[p.accuracy], drop_=summary[p.drop],
                            drop_sd=summary[f"{p.drop}_sd"]) for p in probes_of(summary, with_baseline=False)]
    return pd.concat(parts, ignore_index=True)[
        ["label", "family", by, "seeds", "paper_rate", "new_domain_accuracy", "new_domain_accuracy_sd", "probe",
         "kept", "drop_", "drop_sd"]].rename(columns={"drop_": "drop"})


def _names(frame: pd.DataFrame) -> list[str]:
    return [p.name for p in probes_of(frame, with_baseline=False)]


def _slug(probe: str) -> str:
    """A probe's name as a Vega view name: "k-NN" -> "knn", "linear head" -> "linear_head"."""
    return probe.lower().replace("-", "").replace(" ", "_")


def rate_chart(frame: pd.DataFrame):
    """Each family's frontier over the rate grid, on both probes, and every family at the slider's rate.

    Top: what the configuration learnt (y) against what it kept of the pre-training domain (x), one
    line per family through its rates (mean over seeds); the k-NN probe left, the linear head right.
    The slider picks one rate of the grid: its points are drawn large, the others faint; a ring marks
    the rate the paper gave that row. Bottom (view `at_rate`): every family at the picked rate.
    """
    rates = sorted(frame["lr"].unique().tolist())
    names = _names(frame)
    width, small = PANEL_WIDTH[len(names)], SMALL_WIDTH[len(names)]
    long = _long(axis_summary(frame, "lr"), "lr")
    long = long.assign(rate_index=long["lr"].map(index_of(rates)))
    pick = alt.param(name=RATE_PARAM, value=rates.index(0.005) if 0.005 in rates else 0, bind=alt.binding_radio(
        options=list(range(len(rates))), labels=[f"{r:g}" for r in rates], name="Learning rate "))
    colour = alt.Color("label:N", title="Method", scale=LABEL_COLOURS, legend=alt.Legend(orient="top"))
    tooltip = ["label:N", alt.Tooltip("lr:Q", title="learning rate", format="~g"), "seeds:Q", "probe:N",
               alt.Tooltip("new_domain_accuracy:Q", title="new domain (%)", format=".2f"),
               alt.Tooltip("kept:Q", title="kept (%)", format=".2f"),
               alt.Tooltip("drop:Q", title="drop (points)", format=".2f"),
               alt.Tooltip("drop_sd:Q", title="drop sd over seeds", format=".2f")]

    def panel(probe: str) -> alt.LayerChart:
        base = alt.Chart(long).transform_filter(alt.datum.probe == probe)
        x = alt.X("kept:Q", title=f"Pre-training domain, {probe} probe (%)", scale=alt.Scale(zero=False))
        y = alt.Y("new_domain_accuracy:Q", title="New-domain accuracy (%)", scale=alt.Scale(zero=False))
        lines = base.mark_line(strokeWidth=1.5, opacity=0.6).encode(x=x, y=y, color=colour, order="lr:Q")
        points = base.mark_circle().encode(
            x=x, y=y, color=colour, tooltip=tooltip,
            size=alt.condition(f"datum.rate_index == {RATE_PARAM}", alt.value(220), alt.value(50)),
            opacity=alt.condition(f"datum.rate_index == {RATE_PARAM}", alt.value(1.0), alt.value(0.35)))
        rings = base.transform_filter(alt.datum.paper_rate).mark_point(size=420, color="black", strokeWidth=1.2) \
            .encode(x=x, y=y, tooltip=tooltip)
        return alt.layer(lines, rings, points).properties(width=width, height=260, title=f"{probe} probe")

    picked = alt.Chart(long).transform_filter(f"datum.rate_index == {RATE_PARAM}")
    bars = alt.hconcat(
        picked.transform_filter(alt.datum.probe == KNN.name).mark_point(filled=True, size=80).encode(
            x=alt.X("new_domain_accuracy:Q", title="New-domain accuracy (%)", scale=alt.Scale(zero=False)),
            y=alt.Y("label:N", title=None, sort=list(AXIS_LABELS)), color=colour, tooltip=tooltip,
        ).properties(width=small, title="learnt", name="at_rate_learnt"),
        *(picked.transform_filter(alt.datum.probe == name).mark_bar().encode(
            x=alt.X("drop:Q", title=f"{name} drop (points)"),
            y=alt.Y("label:N", title=None, sort=list(AXIS_LABELS), axis=None), color=colour, tooltip=tooltip,
        ).properties(width=small, title=f"forgotten, {name}", name=f"at_rate_{_slug(name)}") for name in names),
    )
    caption = picked.transform_aggregate(lr="max(lr)").transform_calculate(
        text="'every family at learning rate ' + format(datum.lr, '~g')").mark_text(
        align="left", fontSize=13, fontWeight="bold").encode(text="text:N", x=alt.value(0), y=alt.value(0)) \
        .properties(width=len(names) * width, height=10, view=alt.ViewBackground(stroke=None))
    return alt.vconcat(alt.hconcat(*(panel(name) for name in names)), caption, bars).add_params(pick) \
        .properties(background=BACKGROUND)


def schedule_chart(frame: pd.DataFrame, curves: pd.DataFrame):
    """Forgetting during training and at its end, against the schedule length, on both probes.

    Top: the forgetting curves (drop since step 0, on the curve probe) of the runs whose schedule
    the slider picks, k-NN left and linear head right (views `curve_*`). Bottom: at the end of
    training (the final probe), new-domain accuracy and both drops against the schedule length,
    one line per family, the picked length marked (views `at_length_*`).
    """
    lengths = sorted(frame["steps"].unique().tolist())
    names = [name for name in _names(frame) if name in set(curves["probe"])]
    width, small = PANEL_WIDTH[len(names)], SMALL_WIDTH[len(names)]
    long = _long(axis_summary(frame, "steps"), "steps")
    long = long.assign(length_index=long["steps"].map(index_of(lengths)))
    curves = curves.assign(length_index=curves["steps"].map(index_of(lengths)))
    pick = alt.param(name=LENGTH_PARAM, value=0, bind=alt.binding_radio(
        options=list(range(len(lengths))), labels=[f"{n:,}" for n in lengths], name="Schedule length (steps) "))
    colour = alt.Color("label:N", title="Method", scale=LABEL_COLOURS, legend=alt.Legend(orient="top"))
    step_x = alt.X("step:Q", title="Training step", scale=alt.Scale(type="symlog", constant=10),
                   axis=alt.Axis(values=sorted(curves["step"].unique().tolist()), labelOverlap="greedy", format="~s"))

    def curve_panel(probe: str) -> alt.Chart:
        return alt.Chart(curves).transform_filter(alt.datum.probe == probe).transform_filter(
            f"datum.length_index == {LENGTH_PARAM}").mark_line(point=True).encode(
            x=step_x, y=alt.Y("drop:Q", title=f"{probe} drop since step 0 (points)"), color=colour, detail="run:N",
            tooltip=["label:N", "steps:Q", "step:Q", alt.Tooltip("accuracy:Q", format=".2f"),
                     alt.Tooltip("drop:Q", format=".2f")],
        ).properties(width=width, height=240, title=f"during training, {probe}", name=f"curve_{_slug(probe)}")

    length_x = alt.X("steps:Q", title="Schedule length (steps)", scale=alt.Scale(type="log"),
                     axis=alt.Axis(values=lengths, format=","))
    tooltip = ["label:N", "steps:Q", "probe:N", alt.Tooltip("new_domain_accuracy:Q", format=".2f"),
               alt.Tooltip("drop:Q", title="drop (points)", format=".2f")]
    rule = alt.Chart(long).transform_filter(f"datum.length_index == {LENGTH_PARAM}").transform_aggregate(
        steps="max(steps)").mark_rule(color="gray", strokeDash=[4, 3]).encode(x=length_x)

    def end_panel(y: alt.Y, probe: str, title: str, name: str) -> alt.LayerChart:
        base = alt.Chart(long).transform_filter(alt.datum.probe == probe)
        line = base.mark_line(point=True).encode(x=length_x, y=y, color=colour, tooltip=tooltip)
        return alt.layer(line, rule.properties(name=name)).properties(width=small, height=200, title=title)

    bottom = alt.hconcat(
        end_panel(alt.Y("new_domain_accuracy:Q", title="New-domain accuracy (%)", scale=alt.Scale(zero=False)),
                  KNN.name, "learnt", "at_length_learnt"),
        *(end_panel(alt.Y("drop:Q", title=f"{name} drop (points)"), name, f"at the end, {name}",
                    f"at_length_{_slug(name)}") for name in names),
    )
    top = alt.hconcat(*(curve_panel(name) for name in names))
    return alt.vconcat(top, bottom).add_params(pick).properties(background=BACKGROUND)


SIZE_PARAM = "size_pick"


def resolution_chart(table: pd.DataFrame, native: int):
    """Each family's drop on each probe against the source resolution (dots with 95% intervals), two panels
    to a row after the new-domain accuracy; the buttons pick a resolution, drawn strong, the others faint."""
    if table.empty:
        raise ValueError("no records of the resolution axis to plot (vitcf sweep --grid resolution writes them)")
    sizes = sorted(table["source_size"].unique().tolist())
    pick = alt.param(name=SIZE_PARAM, value=sizes[0], bind=alt.binding_radio(
        options=sizes, labels=[f"{s} px" + (" (native)" if s == native else "") for s in sizes],
        name="Source resolution "))
    colour = alt.Color("label:N", title="Method", scale=LABEL_COLOURS, legend=alt.Legend(orient="top"))
    x = alt.X("source_size:O", title=f"source resolution (px), resized to {native}", sort=sizes,
              axis=alt.Axis(labelAngle=0))
    picked = alt.condition(f"datum.source_size == {SIZE_PARAM}", alt.value(1.0), alt.value(0.3))
    tooltip = ["label:N", alt.Tooltip("source_size:Q", title="source size (px)"), "probe:N", "seeds:Q",
               alt.Tooltip("drop:Q", title="value (points or %)", format=".2f"),
               alt.Tooltip("low:Q", title="95% low", format=".2f"), alt.Tooltip("high:Q", title="95% high", format=".2f")]

    def panel(what: str) -> alt.LayerChart:
        base = alt.Chart(table).transform_filter(alt.datum.probe == what)
        title = "New-domain test accuracy (%)" if what == NEW_DOMAIN else f"{what} drop (points)"
        y = alt.Y("drop:Q", title=title, scale=alt.Scale(zero=what != NEW_DOMAIN))
        offset = alt.XOffset("label:N", sort=list(AXIS_LABELS))
        span = alt.Y("low:Q", title=title, scale=alt.Scale(zero=what != NEW_DOMAIN))  # the 95% interval
        rules = base.mark_rule(strokeWidth=1.5).encode(x=x, xOffset=offset, y=span, y2="high:Q", color=colour,
                                                       opacity=picked)
        dots = base.mark_circle(size=45).encode(x=x, xOffset=offset, y=y, color=colour, opacity=picked,
                                                tooltip=tooltip)
        layers = [rules, dots]
        if what != NEW_DOMAIN:
            layers.insert(0, alt.Chart(pd.DataFrame({"zero": [0]})).mark_rule(color="grey", strokeDash=[4, 3])
                          .encode(y="zero:Q"))
        return alt.layer(*layers).properties(width=PAIR_WIDTH, height=200, title=title.split(" (")[0])

    panels = [panel(what) for what in (NEW_DOMAIN, *RESOLUTION_PROBES) if what in set(table["probe"])]
    rows = [alt.hconcat(*panels[i:i + 2]) for i in range(0, len(panels), 2)]
    return alt.vconcat(*rows).add_params(pick).properties(
        background=BACKGROUND, title=alt.Title(
            "What each family learns and forgets as the new domain's resolution falls",
            subtitle="dots: means over seeds; bars: 95% paired bootstrap intervals; the buttons pick a resolution"))
