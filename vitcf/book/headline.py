"""The answer first: what each method learnt and forgot, with intervals, for the top of the book.

One figure (new-domain accuracy, and the drop on each probe of the pre-training domain with its 95%
interval, per configuration) and one table (each of the paper's claims, the paper's verdict beside
ours, the evidence in full), both computed from the run records through `vitcf.book.evidence`.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from vitcf.book import evidence
from vitcf.book.findings import OURS_HEAD, OURS_INSTANCE, OURS_KNN, PAPER_VERDICT, claims_table
from vitcf.book.plots import BACKGROUND, FAMILIES, FAMILY_COLOURS, INSTANCE, KNN
from vitcf.book.report import full_table
from vitcf.base.uncertainty import Paired, bracket

LEARNT = "learnt: new-domain accuracy (%)"
PROBES = (KNN.name, INSTANCE.name)  # the paper's probe, and the fine-grained one with room to fall
PANEL_WIDTH = 150  # three panels and the configuration names fit the book's 688 px column


def _forgot(probe: str) -> str:
    return f"forgot: {probe} drop (points)"


def headline_frame(runs: list[dict], baseline: dict | None, k: int = 20) -> pd.DataFrame:
    """One row per (configuration, measure): the new-domain accuracy and the drop on each probe of
    `PROBES`, each with its 95% interval, where the records carry per-query correctness."""
    family = {r["label"]: r["family"] for r in runs}
    rows = []
    learnt = evidence.correctness(runs, evidence.NEW_DOMAIN, k)
    if learnt:
        paired = Paired(learnt)
        for label in evidence.ordered(runs, learnt):
            found = paired.accuracy(label)
            rows.append({"label": label, "measure": LEARNT, "value": found.estimate, "low": found.low,
                         "high": found.high, "seeds": learnt[label].shape[0]})
    drops = evidence.drop_table(runs, baseline, k, probes=PROBES)
    rows += [{"label": row.label, "measure": _forgot(row.probe), "value": row.drop, "low": row.low,
              "high": row.high, "seeds": row.seeds} for row in drops.itertuples()]
    frame = pd.DataFrame(rows, columns=["label", "measure", "value", "low", "high", "seeds"])
    return frame.assign(family=frame["label"].map(family),
                        interval=[bracket(v, lo, hi) for v, lo, hi in zip(frame["value"], frame["low"], frame["high"])])


def headline_chart(frame: pd.DataFrame):
    """`headline_frame` as dots with their 95% intervals: one row per configuration, one panel per measure
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
        panels.append(alt.layer(*layers).properties(width=PANEL_WIDTH, height=alt.Step(18)))
    return alt.hconcat(*panels, spacing=8).properties(
        background=BACKGROUND, title=alt.Title(
            "What each configuration learnt and forgot",
            subtitle="dots: means over seeds; lines: 95% paired bootstrap intervals; dashed: no drop"))


def headline_note(frame: pd.DataFrame, control: pd.DataFrame | None = None) -> str:
    """The figure in words (Markdown): the largest drop on each probe with its interval, the drops a probe
    cannot tell from none, and, from the positive control's frame, how far each probe can fall."""
    lines = []
    for probe in PROBES:
        part = frame[frame["measure"] == _forgot(probe)]
        if part.empty:
            continue
        most = part.loc[part["value"].idxmax()]
        unclear = part[(part["low"] <= 0) & (part["high"] >= 0)]["label"].tolist()
        text = (f"By {probe}, {most['label']} loses the most, {most['interval']} points; "
                + (f"{len(unclear)} of the {len(part)} configurations lose nothing the probe can tell from none "
                   f"({', '.join(unclear)})" if unclear else "every configuration's drop is clear of zero"))
        scale = None if control is None else control[control["measure"] == _forgot(probe)]
        if scale is not None and not scale.empty:
            worst = scale.loc[scale["value"].idxmax()]
            text += f"; for scale, the positive control {worst['label']} loses {worst['interval']} points"
        lines.append(f"- {text}.")
    return "\n".join(lines)


def claims_view(paper: pd.DataFrame, ours: pd.DataFrame, runs: list[dict], k: int = 20):
    """The paper's claims as the book opens with them: the paper's verdict beside ours (k-NN, with the
    evidence in full), and our verdicts by the other probes; a Styler, no index, nothing cut."""
    table = claims_table(paper, ours, runs, k).reset_index()
    shown = {"claim": "claim", PAPER_VERDICT: "paper", OURS_KNN: "ours (k-NN)",
             "our numbers, k-NN": "our evidence (k-NN), points with 95% interval",
             OURS_INSTANCE: "ours (instance retrieval)", OURS_HEAD: "ours (linear head)"}
    return full_table(table[[c for c in shown if c in table.columns]].rename(columns=shown), index=False)
