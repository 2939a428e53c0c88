"""What the comparison depends on: the learning rate and the schedule length as axes, on every probe.

The paper gives each row one learning rate (full, top-3, linear and LoRA r=8 at 0.005, LoRA r=4 and
r=16 and block expansion at 0.05) and one schedule (10,000 steps). Two grids of the preset vary
them (`vitcf.engine.presets.rate_grid`, `schedule_grid`): five method families on one common grid of rates,
and the same families at their paper rates for longer schedules, probed during training. This
module turns their records into the frames, charts and sentences of the axes page.

Every drop is shown for each probe of the pre-training domain the records carry: the k-NN probe (the
paper's), the linear head fitted on the pre-trained features and applied, frozen, after fine-tuning,
and the instance-retrieval probe (records made before it have the first two only).
"""

from __future__ import annotations

import math
from pathlib import Path

import altair as alt
import pandas as pd

from vitcf.book.findings import CURVE_COLUMNS, NOT_A_PROBE, claims_with_intervals
from vitcf.model.methods import make_method
from vitcf.book.plots import BACKGROUND, KNN, PANEL_WIDTH, PROBES, Probe, forgetting_curve_frame, measured
from vitcf.engine.presets import AXIS_FAMILIES, Preset
from vitcf.base.io import read_json
from vitcf.engine.records import records_frame
from vitcf.book.report import REPO
from vitcf.base.uncertainty import FAILS, HOLDS, INCONCLUSIVE

RATE_PARAM = "rate_pick"
LENGTH_PARAM = "length_pick"
LABELS = tuple(make_method(method, **hparams).label for method, hparams in AXIS_FAMILIES)
LABEL_COLOURS = alt.Scale(domain=list(LABELS), range=["#1f3b73", "#4c78a8", "#9ecae9", "#f58518", "#54a24b"])
SMALL_WIDTH = {1: 200, 2: 150, 3: 112}  # the small panels below the big ones, by the number of probes
# The make target of each preset's axes (its wall time: benchmarks/results/<job>_budget.json).
AXES_JOB = {"mini": "axes", "mini-glyphs": "glyphs-axes"}


def axes_frame(runs: list[dict], preset: Preset, k: int = 20) -> pd.DataFrame:
    """One row per run of the two axes: `records_frame`'s columns plus the run's learning rate and
    schedule length, and whether the rate is the one the paper gave its row."""
    if not runs:
        return pd.DataFrame()
    frame = records_frame(runs, k=k)
    train = {r["run"]: r["config"]["train"] for r in runs}
    paper_rate = {make_method(p.method, **p.hparams).label: p.lr for p in preset.grid}
    frame = frame.assign(
        lr=frame["run"].map(lambda run: train[run]["lr"]),
        steps=frame["run"].map(lambda run: train[run]["steps"]),
    )
    return frame.assign(paper_rate=[math.isclose(lr, paper_rate.get(label, math.nan))
                                    for lr, label in zip(frame["lr"], frame["label"])])


def probes(frame: pd.DataFrame) -> tuple[Probe, ...]:
    """The probes `frame`'s runs measured (accuracy and drop), in `plots.PROBES` order (the k-NN probe always)."""
    return (KNN, *(p for p in PROBES[1:] if measured(frame, p, (p.accuracy, p.drop))))


def axis_summary(frame: pd.DataFrame, by: str) -> pd.DataFrame:
    """Mean and standard deviation over seeds per (label, `by`), `by` being "lr" or "steps"."""
    columns = ["new_domain_accuracy", *(c for p in probes(frame) for c in (p.accuracy, p.drop))]
    grouped = frame.groupby(["label", "family", by], sort=False)
    summary = grouped[columns].mean().join(grouped[columns].std().add_suffix("_sd")).join(
        grouped.size().rename("seeds")).join(grouped["paper_rate"].first()).reset_index()
    order = summary["label"].map(_index_of(LABELS))
    return summary.assign(_o=order).sort_values(["_o", by]).drop(columns="_o").reset_index(drop=True)


def _long(summary: pd.DataFrame, by: str) -> pd.DataFrame:
    """`summary` with one row per probe: accuracy kept and drop (points) under `probe`."""
    parts = [summary.assign(probe=p.name, kept=summary[p.accuracy], drop_=summary[p.drop],
                            drop_sd=summary[f"{p.drop}_sd"]) for p in probes(summary)]
    return pd.concat(parts, ignore_index=True)[
        ["label", "family", by, "seeds", "paper_rate", "new_domain_accuracy", "new_domain_accuracy_sd", "probe",
         "kept", "drop_", "drop_sd"]].rename(columns={"drop_": "drop"})


def _names(frame: pd.DataFrame) -> list[str]:
    return [p.name for p in probes(frame)]


def _slug(probe: str) -> str:
    """A probe's name as a Vega view name: "k-NN" -> "knn", "linear head" -> "linear_head"."""
    return probe.lower().replace("-", "").replace(" ", "_")


def _index_of(values: list) -> dict:
    return {value: i for i, value in enumerate(values)}


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
    long = long.assign(rate_index=long["lr"].map(_index_of(rates)))
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
            y=alt.Y("label:N", title=None, sort=list(LABELS)), color=colour, tooltip=tooltip,
        ).properties(width=small, title="learnt", name="at_rate_learnt"),
        *(picked.transform_filter(alt.datum.probe == name).mark_bar().encode(
            x=alt.X("drop:Q", title=f"{name} drop (points)"),
            y=alt.Y("label:N", title=None, sort=list(LABELS), axis=None), color=colour, tooltip=tooltip,
        ).properties(width=small, title=f"forgotten, {name}", name=f"at_rate_{_slug(name)}") for name in names),
    )
    caption = picked.transform_aggregate(lr="max(lr)").transform_calculate(
        text="'every family at learning rate ' + format(datum.lr, '~g')").mark_text(
        align="left", fontSize=13, fontWeight="bold").encode(text="text:N", x=alt.value(0), y=alt.value(0)) \
        .properties(width=len(names) * width, height=10, view=alt.ViewBackground(stroke=None))
    return alt.vconcat(alt.hconcat(*(panel(name) for name in names)), caption, bars).add_params(pick) \
        .properties(background=BACKGROUND)


def curves_frame(runs: list[dict], k: int = 20) -> pd.DataFrame:
    """One row per (run, probed step, probe): the drop since the run's own step-0 probe, in points.

    Read from `plots.forgetting_curve_frame`. The curves use the preset's smaller curve probe, whose
    step-0 value is its own baseline; runs probed without the linear head (records made before it
    was added) give k-NN rows only.
    """
    curves = forgetting_curve_frame(runs)
    curves = curves[curves["k"] == k]
    steps = {r["run"]: r["config"]["train"]["steps"] for r in runs}
    parts = []
    for probe, column in CURVE_COLUMNS:
        part = curves.dropna(subset=[column])
        start = part[part["step"] == 0].set_index("run")[column]
        part = part[part["run"].isin(start.index)]
        parts.append(part.assign(steps=part["run"].map(steps), probe=probe, accuracy=part[column],
                                 drop=part["run"].map(start) - part[column]))
    return pd.concat(parts, ignore_index=True)[["run", "label", "family", "steps", "step", "probe", "accuracy",
                                                "drop"]]


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
    long = long.assign(length_index=long["steps"].map(_index_of(lengths)))
    curves = curves.assign(length_index=curves["steps"].map(_index_of(lengths)))
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


# --- what the records say --------------------------------------------------------------------------

def claims_by_rate(frame: pd.DataFrame, runs: list[dict] | None = None, k: int = 20) -> pd.DataFrame:
    """The paper's headline claims tested on the rate axis: at the paper's own rates (each family at its
    row's rate) and at each common rate, on each probe. Rows: claims; columns: (probe, rates). Given
    the records (`runs`) with per-query correctness, each verdict is three-way, from its 95% interval
    (`findings.claims_with_intervals`): holds, does not hold, inconclusive; without, it compares the
    means. A claim about the new domain alone reads no probe: "n/a" under the other probes."""
    settings = {"the paper's rates": frame[frame["paper_rate"]]}
    settings.update({f"all at {lr:g}": frame[frame["lr"] == lr] for lr in sorted(frame["lr"].unique())})
    table = {}
    for probe in _names(frame):
        for name, rows in settings.items():
            chosen = set(rows["run"])
            tested = [r for r in runs if r["run"] in chosen] if runs else None
            found = claims_with_intervals(rows, tested, probe, k) if not rows.empty else []
            table[(probe, name)] = {c["claim"]: c["verdict"] if c["forgetting"] or probe == KNN.name
                                    else NOT_A_PROBE for c in found}
    return pd.DataFrame(table).rename_axis("claim")


def _where(held: list[str], failed: list[str], unsure: list[str]) -> str:
    """Where along the common rates a claim holds, in words."""
    total = len(held) + len(failed) + len(unsure)
    if len(held) == total:
        return "holds at every common rate"
    if len(failed) == total:
        return "holds at no common rate"
    if len(unsure) == total:
        return "is inconclusive at every common rate"
    text = (f"holds at {', '.join(held)}" + (f" but not at {', '.join(failed)}" if failed else "")) if held \
        else f"does not hold at {', '.join(failed)}" if failed else ""
    return text + (f" and is inconclusive at {', '.join(unsure)}" if unsure else "")


def _reason(paper: str, held: list[str], failed: list[str], unsure: list[str]) -> str:
    """What decides a claim along the common rates: the rate, the method, or neither can be told."""
    if held and failed:
        return "the rate decides it"
    if not held and not failed:
        return "these records cannot tell at matched rates"
    found = HOLDS if held else FAILS
    if found == paper:
        return "the method decides it" + (" wherever the records can tell" if unsure else ", whatever the rate")
    if paper in (HOLDS, FAILS):
        return "at the paper's rates the rates were speaking, not the methods"
    return "matched rates settle what the paper's rates leave open"


def _checks(table: pd.DataFrame):
    """Each (claim, probe) that `claims_by_rate`'s table tested at a common rate: (claim, what it reads,
    its verdict at the paper's rates, and the common rates where it holds, fails, is inconclusive)."""
    names = list(dict.fromkeys(probe for probe, _ in table.columns))
    for probe in names:
        part = table[probe]
        paper, matched = part["the paper's rates"], part.drop(columns="the paper's rates")
        for claim in part.index:
            def at(word: str) -> list[str]:
                return [c.removeprefix("all at ") for c in matched.columns if matched.loc[claim, c] == word]

            held, failed, unsure = at(HOLDS), at(FAILS), at(INCONCLUSIVE)
            if held or failed or unsure:
                about = f"{probe} probe" if table.loc[claim, (names[-1], "the paper's rates")] != NOT_A_PROBE \
                    else "the new domain alone"
                yield claim, about, paper[claim], held, failed, unsure


def rates_note(table: pd.DataFrame) -> str:
    """Which of the paper's claims survive matched rates and which were the rates speaking (Markdown);
    `table` is `claims_by_rate`'s."""
    lines = [f"- *{claim}* ({about}): {paper} at the paper's rates; {_where(held, failed, unsure)}: "
             f"{_reason(paper, held, failed, unsure)}."
             for claim, about, paper, held, failed, unsure in _checks(table)]
    return "\n".join(lines) if lines else "*No rate-axis records yet: `make axes` (`make glyphs-axes`) makes them.*"


def rates_headline(table: pd.DataFrame | None) -> str:
    """The rate axis in one sentence: of the claims checked on each probe, how many the method decides and
    how many the rate (Markdown); `table` is `claims_by_rate`'s."""
    reasons = [_reason(paper, held, failed, unsure) for _, _, paper, held, failed, unsure in _checks(table)] \
        if table is not None else []
    if not reasons:
        return "*No rate-axis records yet: `make axes` (`make glyphs-axes`) makes them.*"
    parts = [text.format(n=n) for start, text in _SHORT if (n := sum(r.startswith(start) for r in reasons))]
    listed = "; ".join(parts)
    return (f"**In short.** Of the {len(reasons)} checks of the paper's claims on this page (one claim on one probe, "
            f"at the paper's rates and at every common rate), {listed}. The section on matched rates gives each one.")


# `_reason`'s verdicts, as the headline counts them.
_SHORT = (("the method decides", "the method decides {n}"), ("the rate decides", "the rate decides {n}"),
          ("at the paper's rates", "in {n} the paper's mixed rates spoke, not the methods"),
          ("matched rates settle", "in {n} matched rates settle what the paper's rates left open"),
          ("these records cannot tell", "in {n} the records cannot tell"))


def learning_note(frame: pd.DataFrame) -> str:
    """Per family: the rate that learnt most, and how much more that cost on each probe (Markdown)."""
    summary = axis_summary(frame, "lr")
    shown = probes(frame)

    def drops(row) -> str:
        return ", ".join(f"{row[p.drop]:.2f} {p.adjective}" for p in shown)

    lines = []
    for label, rows in summary.groupby("label", sort=False):
        paper = rows[rows["paper_rate"]]
        best = rows.loc[rows["new_domain_accuracy"].idxmax()]
        text = (f"- **{label}** learnt most at {best['lr']:g} ({best['new_domain_accuracy']:.2f}% on the new domain, "
                f"drops in points: {drops(best)})")
        if not paper.empty:
            p = paper.iloc[0]
            text += f"; at the paper's {p['lr']:g} it reached {p['new_domain_accuracy']:.2f}% (drops {drops(p)})"
        span = rows["new_domain_accuracy"].max() - rows["new_domain_accuracy"].min()
        lines.append(text + f". Across the {len(rows)} rates its new-domain accuracy spans {span:.2f} points.")
    return "\n".join(lines)


def schedule_note(frame: pd.DataFrame, noise: pd.DataFrame | None = None) -> str:
    """Per family and probe: the end-of-training drop at each schedule length, and whether it still grows
    from the second-longest to the longest schedule by more than twice the seed spread (`noise`: the
    rate axis's frame, whose seeds at the paper's rate give each family's standard deviation) (Markdown)."""
    summary = axis_summary(frame, "steps")
    sd = {}
    if noise is not None and not noise.empty:
        at_paper = axis_summary(noise[noise["paper_rate"]], "lr")
        sd = {(row["label"], p.name): row[f"{p.drop}_sd"] for _, row in at_paper.iterrows() for p in probes(at_paper)}
    lines = []
    for label, rows in summary.groupby("label", sort=False):
        rows = rows.sort_values("steps")
        parts = []
        for probe in probes(summary):
            values = ", ".join(f"{d:.2f}" for d in rows[probe.drop])
            text = f"{probe.name} drop {values} points"
            if len(rows) >= 2:
                change = rows[probe.drop].iloc[-1] - rows[probe.drop].iloc[-2]
                spread = sd.get((label, probe.name))
                if spread is not None and not math.isnan(spread):
                    trend = ("still grows" if change > 2 * spread else
                             "falls back" if change < -2 * spread else "is flat within twice the seed spread")
                    text += (f" ({trend}: {change:+.2f} from {rows['steps'].iloc[-2]:,} to {rows['steps'].iloc[-1]:,} "
                             f"steps; seed sd at {rows['steps'].iloc[0]:,} steps {spread:.2f})")
                else:
                    text += f" ({change:+.2f} from {rows['steps'].iloc[-2]:,} to {rows['steps'].iloc[-1]:,} steps)"
            parts.append(text)
        steps = ", ".join(f"{n:,}" for n in rows["steps"])
        lines.append(f"- **{label}** at {steps} steps: " + "; ".join(parts) + ".")
    return "\n".join(lines) if lines else "*No schedule-axis records yet: `make axes` (`make glyphs-axes`) makes them.*"


def runs_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Every run of the axes, one row each: nothing averaged away."""
    names = {"new_domain_accuracy": "new domain (%)"}
    for p in probes(frame):
        names |= {p.accuracy: f"{p.name} (%)", p.drop: f"{p.adjective} drop"}
    table = frame[["label", "lr", "steps", "seed", *names, "run"]].rename(columns={
        "label": "method", "lr": "learning rate", "run": "record", **names})
    order = table["method"].map(_index_of(LABELS))
    numbers = list(names.values())
    return table.assign(_o=order).sort_values(["_o", "steps", "learning rate", "seed"]).drop(columns="_o") \
        .reset_index(drop=True).round({column: 2 for column in numbers})


def runs_view(frame: pd.DataFrame):
    """`runs_table` for display: every row shown (no truncation), rates as written, accuracies to 2 decimals."""
    table = runs_table(frame)
    numbers = {column: "{:.2f}" for column in table.columns if table[column].dtype.kind == "f"}
    return table.style.format({**numbers, "learning rate": "{:g}"}).hide(axis="index").set_table_styles(
        [{"selector": "td, th", "props": "padding: 0.1em 0.6em; text-align: right"}])


def probe_gap_note(frame: pd.DataFrame) -> str:
    """How far apart the two probes' drops are over the runs of `frame` (Markdown)."""
    moved = frame[frame["label"] != "Linear"]  # linear fine-tuning leaves the backbone as it was: both drops 0
    if moved.empty:
        return ""
    larger = int((moved["linear_head_drop"] > moved["drop"]).sum())
    ratio = (moved["linear_head_drop"] / moved["drop"].where(moved["drop"] > 0)).dropna()
    text = (f"Over the {len(moved)} runs on this page that change the backbone, the linear-head drop is larger than "
            f"the k-NN drop in {larger}; the k-NN drop ranges from {moved['drop'].min():.2f} to "
            f"{moved['drop'].max():.2f} points, the linear-head drop from {moved['linear_head_drop'].min():.2f} to "
            f"{moved['linear_head_drop'].max():.2f}")
    if not ratio.empty:
        text += f", and where the k-NN probe dropped at all, the linear-head drop is {ratio.median():.1f} times it (median)"
    return text + "."


def budget_note(root: Path = REPO, preset: str = "mini") -> str:
    """The measured wall time of `preset`'s axes (`make axes` for mini, `make glyphs-axes` for mini-glyphs:
    benchmarks/results/<job>_budget.json), as a sentence."""
    if preset not in AXES_JOB:  # a preset without a make job (smoke, paper): its sweeps are the command
        return (f"No `make` job runs the axes of the `{preset}` preset: `vitcf sweep --preset {preset} --grid schedule` "
                f"and `--grid rates` run them (make jobs exist for {', '.join(AXES_JOB)}).")
    job = AXES_JOB[preset]
    path = root / "benchmarks" / "results" / f"{job}_budget.json"
    record = read_json(path) if path.is_file() else None
    if not record:
        return (f"The time of `make {job}` is not measured in this checkout yet: "
                f"`python benchmarks/book_budget.py --job {job}` measures it.")
    steps = "; ".join(f"{step['step']} {step['seconds']:.0f} s" for step in record["steps"])
    runs = record.get("axis_runs", {})
    before = len(runs.get("recorded_before", []))
    return (f"`make {job}` took {record['total_seconds'] / 60:.1f} min on {record['environment']['hardware']} "
            f"({steps}), against a target of {record['target_seconds'] / 60:.0f} min: "
            f"{'met' if record['within_target'] else 'NOT met'}. It planned {runs.get('planned', '?')} runs, of which "
            f"{before} were recorded before it started (`{record['command']}`).")


def grids_note(preset: Preset) -> str:
    """The two grids of `preset` in words, read from `vitcf.engine.presets` (Markdown)."""
    if not preset.rates and not preset.schedule:
        return f"The `{preset.name}` preset defines no axis grid."
    families = ", ".join(dict.fromkeys(make_method(p.method, **p.hparams).label for p in (*preset.rates, *preset.schedule)))
    rates = ", ".join(f"{lr:g}" for lr in sorted({p.lr for p in preset.rates}))
    lengths = {}
    for p in preset.schedule:
        lengths.setdefault(p.steps or preset.steps, []).append(make_method(p.method, **p.hparams).label)
    every = [n for n, labels in sorted(lengths.items()) if set(labels) == set(LABELS)]
    some = [f"{n:,} ({', '.join(labels)} only)" for n, labels in sorted(lengths.items()) if n not in every]
    return (f"For the `{preset.name}` preset: {families}; rates {rates} (the preset's {preset.steps:,} steps); "
            f"schedules of {', '.join(f'{n:,}' for n in every)}{', ' + ', '.join(some) if some else ''} steps.")
