"""The axes page's sentences (Markdown): what each family learns and forgets along the rate, schedule, resolution."""

from __future__ import annotations

import math

import pandas as pd

from vitcf.base.uncertainty import FAILS, HOLDS, INCONCLUSIVE, bracket
from vitcf.book.evidence import NEW_DOMAIN, RESOLUTION_PROBES
from vitcf.book.stats import axis_summary, probes_of


def learning_note(frame: pd.DataFrame) -> str:
    """Per family: the rate that learnt most, and how much more that cost on each probe (Markdown)."""
    summary = axis_summary(frame, "lr")
    shown = probes_of(frame, with_baseline=False)

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
    if frame.empty:
        raise ValueError("no schedule-axis records to describe: a page shows `vitcf.book.pages.missing_runs` in "
                         "their place")
    summary = axis_summary(frame, "steps")
    sd = {}
    if noise is not None and not noise.empty:
        at_paper = axis_summary(noise[noise["paper_rate"]], "lr")
        sd = {(row["label"], p.name): row[f"{p.drop}_sd"] for _, row in at_paper.iterrows()
              for p in probes_of(at_paper, with_baseline=False)}
    lines = []
    for label, rows in summary.groupby("label", sort=False):
        rows = rows.sort_values("steps")
        parts = []
        for probe in probes_of(summary, with_baseline=False):
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
    return "\n".join(lines)


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


def _listing(labels: list[str]) -> str:
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


def resolution_note(effects: pd.DataFrame, table: pd.DataFrame) -> str:
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
    for probe in [p for p in RESOLUTION_PROBES if p in set(at["probe"])]:
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
