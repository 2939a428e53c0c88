"""The new domain's source resolution as an axis: what each family forgets when it fine-tunes on blurred images.

A preset's resolution grid (`vitcf.engine.presets.resolution_grid`) runs the five method families of the other
axes at their paper rates with the new domain downsampled before the input pipeline resizes it back
(`vitcf.engine.batching.at_source_size`); the core grid's runs of the same families are the native resolution.
This module turns both into one table of drops with paired bootstrap intervals, the effect of the lower
resolutions against the native one, a chart with a picker over the resolutions, and the sentences.
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from vitcf.book.axes import LABEL_COLOURS, LABELS
from vitcf.engine.sources import SIDES
from vitcf.book.evidence import BEFORE, NEW_DOMAIN, REFIT, baseline_correct, run_correct
from vitcf.book.plots import BACKGROUND, HEAD, INSTANCE, KNN
from vitcf.engine.presets import Preset
from vitcf.base.uncertainty import FAILS, HOLDS, INCONCLUSIVE, Paired, bracket

PROBE_NAMES = (KNN.name, INSTANCE.name, HEAD.name, REFIT)  # the paper's probe first
SIZE_PARAM = "size_pick"
PANEL_WIDTH = 250  # two panels to a row fit the book's column
TABLE_COLUMNS = ["label", "probe", "source_size", "drop", "low", "high", "seeds"]
EFFECT_COLUMNS = ["label", "probe", "source_size", "native", "effect", "low", "high", "verdict"]


def source_size(record: dict, preset: Preset) -> int:
    """The side (pixels) a run saw the new domain at: its recorded source size, else the dataset's own."""
    return record["config"]["preset"].get("source_size") or SIDES[preset.new_domain]


def axis_runs(resolution_runs: list[dict], core_runs: list[dict]) -> list[dict]:
    """The records of the axis: the resolution grid's runs and the core grid's runs of the same families."""
    return [*resolution_runs, *(r for r in core_runs if r["label"] in {x["label"] for x in resolution_runs})]


def _matrices(runs: list[dict], preset: Preset, what: str, k: int) -> dict[tuple[str, int], np.ndarray]:
    """(label, source size) -> seeds x items correctness of `what`, for the runs that recorded it."""
    rows: dict[tuple[str, int], list[np.ndarray]] = {}
    for record in sorted(runs, key=lambda r: r["seed"]):
        hits = run_correct(record, what, k)
        if hits is not None:
            rows.setdefault((record["label"], source_size(record, preset)), []).append(hits)
    return {key: np.stack(value) for key, value in rows.items()}


def _order(keys) -> list[tuple[str, int]]:
    rank = {label: i for i, label in enumerate(LABELS)}
    return sorted(keys, key=lambda key: (rank.get(key[0], len(rank)), key[0], key[1]))


def drop_table(runs: list[dict], baseline: dict | None, preset: Preset, k: int = 20) -> pd.DataFrame:
    """One row per (family, probe, source size): the drop from the pre-trained backbone (points) with its 95%
    paired bootstrap interval (queries and seeds resampled), and one "new domain" row per (family, size)
    whose `drop` column holds the new-domain test accuracy (%) instead, with its interval."""
    rows = []
    for what in PROBE_NAMES:
        before = baseline_correct(baseline, what, k)
        matrices = _matrices(runs, preset, what, k)
        if before is None or not matrices:
            continue
        paired = Paired({**matrices, BEFORE: before})
        for key in _order(matrices):
            found = paired.difference(key, BEFORE)
            rows.append([key[0], what, key[1], found.estimate, found.low, found.high, matrices[key].shape[0]])
    learnt = _matrices(runs, preset, NEW_DOMAIN, k)
    if learnt:
        paired = Paired(learnt)
        for key in _order(learnt):
            found = paired.accuracy(key)
            rows.append([key[0], NEW_DOMAIN, key[1], found.estimate, found.low, found.high, learnt[key].shape[0]])
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def effect_table(runs: list[dict], preset: Preset, k: int = 20) -> pd.DataFrame:
    """Per (family, probe, lower source size): how much more the family forgets there than at the native
    resolution (points; the native accuracy minus the lower one's, on the same queries), with its 95% paired
    interval and the verdict of "a lower resolution forgets more": holds, does not hold, inconclusive, or
    "unchanged" where the runs got exactly the same queries right (a frozen backbone)."""
    native = SIDES[preset.new_domain]
    rows = []
    for what in PROBE_NAMES:
        matrices = _matrices(runs, preset, what, k)
        if not matrices:
            continue
        paired = Paired(matrices)
        for label, size in _order(matrices):
            if size == native or (label, native) not in matrices:
                continue
            found = paired.difference((label, size), (label, native))
            same = matrices[(label, size)].shape == matrices[(label, native)].shape and bool(
                (matrices[(label, size)] == matrices[(label, native)]).all())
            rows.append([label, what, size, native, found.estimate, found.low, found.high,
                         "unchanged" if same else found.verdict()])
    return pd.DataFrame(rows, columns=EFFECT_COLUMNS)


def effect_view(effects: pd.DataFrame) -> pd.DataFrame:
    """`effect_table` as the page shows it: one row per family and lower size, a column per probe."""
    if effects.empty:
        return pd.DataFrame()
    cells = effects.assign(cell=[f"{bracket(e, lo, hi)} {v}" for e, lo, hi, v in
                                 zip(effects["effect"], effects["low"], effects["high"], effects["verdict"])])
    wide = cells.pivot(index=["label", "source_size"], columns="probe", values="cell")
    wide = wide.reindex(columns=[p for p in PROBE_NAMES if p in set(effects["probe"])])
    wide = wide.reindex(_order(wide.index))
    native = int(effects["native"].iloc[0])
    wide.columns = [f"{probe}: drop at this size minus at {native} px" for probe in wide.columns]
    wide.index.names = ["method", "source size (px)"]
    return wide.reset_index()


def chart(table: pd.DataFrame, native: int):
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
        offset = alt.XOffset("label:N", sort=list(LABELS))
        span = alt.Y("low:Q", title=title, scale=alt.Scale(zero=what != NEW_DOMAIN))  # the 95% interval
        rules = base.mark_rule(strokeWidth=1.5).encode(x=x, xOffset=offset, y=span, y2="high:Q", color=colour,
                                                       opacity=picked)
        dots = base.mark_circle(size=45).encode(x=x, xOffset=offset, y=y, color=colour, opacity=picked,
                                                tooltip=tooltip)
        layers = [rules, dots]
        if what != NEW_DOMAIN:
            layers.insert(0, alt.Chart(pd.DataFrame({"zero": [0]})).mark_rule(color="grey", strokeDash=[4, 3])
                          .encode(y="zero:Q"))
        return alt.layer(*layers).properties(width=PANEL_WIDTH, height=200, title=title.split(" (")[0])

    panels = [panel(what) for what in (NEW_DOMAIN, *PROBE_NAMES) if what in set(table["probe"])]
    rows = [alt.hconcat(*panels[i:i + 2]) for i in range(0, len(panels), 2)]
    return alt.vconcat(*rows).add_params(pick).properties(
        background=BACKGROUND, title=alt.Title(
            "What each family learns and forgets as the new domain's resolution falls",
            subtitle="dots: means over seeds; bars: 95% paired bootstrap intervals; the buttons pick a resolution"))


def _listing(labels: list[str]) -> str:
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


def note(effects: pd.DataFrame, table: pd.DataFrame) -> str:
    """What the axis says, per probe and family, at the lowest resolution against the native one (Markdown)."""
    if effects.empty:
        return "*No family has runs at both a lower and the native resolution yet.*"
    native = int(effects["native"].iloc[0])
    lowest = int(effects["source_size"].min())
    at = effects[effects["source_size"] == lowest]
    lines = [f"Each family fine-tuned on the new domain at {lowest} px (upsampled to {native}) against the same "
             f"family at {native} px: the drop at {lowest} px minus the drop at {native} px, with its 95% "
             "paired interval. Positive: the blurred domain costs more of the pre-training domain."]
    words = {HOLDS: "forgets more at {} px", FAILS: "forgets less at {} px", INCONCLUSIVE: "no clear difference",
             "unchanged": "unchanged (its backbone is frozen)"}
    for probe in [p for p in PROBE_NAMES if p in set(at["probe"])]:
        rows = at[at["probe"] == probe]
        parts = []
        for verdict in (HOLDS, FAILS, INCONCLUSIVE, "unchanged"):
            picked = rows[rows["verdict"] == verdict]
            if picked.empty:
                continue
            named = [f"{r.label} {bracket(r.effect, r.low, r.high)}" if verdict != "unchanged" else r.label
                     for r in picked.itertuples()]
            parts.append(f"{words[verdict].format(lowest)}: {_listing(named)}")
        lines.append(f"- **{probe}**: " + "; ".join(parts) + ".")
    learnt = table[(table["probe"] == NEW_DOMAIN) & table["source_size"].isin([lowest, native])]
    if not learnt.empty:
        means = learnt.pivot(index="label", columns="source_size", values="drop")
        if lowest in means and native in means:
            gaps = (means[native] - means[lowest]).dropna()
            span = f"{gaps.min():.1f} to {gaps.max():.1f} points" if len(gaps) > 1 else f"{gaps.iloc[0]:.1f} points"
            if (gaps > 0).all():
                lines.append(f"- **What is learnt**: the new domain at {lowest} px is harder, its test accuracy "
                             f"{span} below {native} px's, so any extra forgetting there comes with a harder task, "
                             "not with blur alone.")
            elif (gaps < 0).all():
                span = f"{(-gaps).min():.1f} to {(-gaps).max():.1f} points" if len(gaps) > 1 else f"{-gaps.iloc[0]:.1f} points"
                lines.append(f"- **What is learnt**: every family learns the new domain better at {lowest} px, its test "
                             f"accuracy {span} above {native} px's, so the blurred domain forgets no more for being "
                             "harder to learn.")
            else:
                lines.append(f"- **What is learnt**: the test accuracy at {lowest} px minus that at {native} px "
                             f"ranges over {(-gaps).min():.1f} to {(-gaps).max():.1f} points across the families.")
    return "\n".join(lines)
