"""How far each probe of the pre-training domain can fall, and how far the runs made it fall.

A drop means little without the probe's range. The folder's baseline record holds every probe on
raw pixels, on a random-init network of the backbone's architecture and on the pre-trained backbone,
all on the same bank and queries (`vitcf.engine.study.reference_levels`); the positive control (runs built to
wreck the representation, `Preset.control`) shows whether the probe falls when the representation is
gone. Each drop is also read as a share of the margin pre-training added over random init:
(before - after) / (before - random init).
"""

from __future__ import annotations

import math

import pandas as pd

from vitcf.book.plots import HEAD, INSTANCE, KNN, Probe, label_summary, measured

LEVEL_KEYS = {KNN.name: "knn", HEAD.name: "linear_head", INSTANCE.name: "instance"}  # the baseline record's keys


def level(baseline: dict | None, source: str, probe: Probe, k: int = 20) -> float:
    """`probe`'s accuracy on `source` ("raw_pixels", "random_init" or "pretrained") from a baseline
    record; NaN where it was not measured (older baselines have no reference levels)."""
    if not baseline:
        return math.nan
    scores = baseline if source == "pretrained" else (baseline.get("levels") or {}).get(source) or {}
    value = scores.get(LEVEL_KEYS[probe.name])
    if isinstance(value, dict):
        value = value.get(str(k), value.get(k))
    return math.nan if value is None else float(value)


def probe_range_table(baseline: dict | None, control: pd.DataFrame | None = None, k: int = 20) -> pd.DataFrame:
    """One row per probe: raw pixels, random init and the pre-trained backbone on the same bank and
    queries, the room pre-training made (pre-trained - random init), and each positive control's
    accuracy after its run (mean over seeds)."""
    rows = []
    controls = label_summary(control) if control is not None and not control.empty else None
    for probe in (KNN, HEAD, INSTANCE):
        pretrained = level(baseline, "pretrained", probe, k)
        if math.isnan(pretrained):
            continue
        row = {"probe": probe.name + (f", k={k}" if probe is not HEAD else ""),
               "raw pixels (%)": level(baseline, "raw_pixels", probe, k),
               "random init (%)": level(baseline, "random_init", probe, k),
               "pre-trained (%)": pretrained}
        row["learned margin (points)"] = pretrained - row["random init (%)"]
        if controls is not None and measured(controls, probe):
            for _, c in controls.iterrows():
                row[f"{c['label']} (%)"] = c[probe.accuracy]
        rows.append(row)
    return pd.DataFrame(rows).set_index("probe").round(2) if rows else pd.DataFrame()


def margin_table(frame: pd.DataFrame, baseline: dict | None, k: int = 20) -> pd.DataFrame:
    """Per configuration (mean over seeds) and probe: the share of the learned margin lost,
    (before - after) / (before - random init); NaN where the probe or its random-init level is missing."""
    summary = label_summary(frame).set_index("label")
    columns = {}
    for probe in (KNN, HEAD, INSTANCE):
        floor = level(baseline, "random_init", probe, k)
        if not measured(summary, probe) or math.isnan(floor):
            continue
        margin = summary[probe.baseline] - floor
        columns[f"{probe.name}: share of margin lost"] = (summary[probe.drop] / margin).where(margin > 0)
    return pd.DataFrame(columns, index=summary.index)


def control_note(baseline: dict | None, control: pd.DataFrame | None, k: int = 20) -> str:
    """One paragraph: whether the positive control brings each probe down to its random-init level (Markdown)."""
    if control is None or control.empty:
        return ("*No positive-control run is recorded for this preset: `vitcf sweep --preset <preset> --grid "
                "control` makes them.*")
    summary = label_summary(control)
    parts = []
    for probe in (KNN, HEAD, INSTANCE):
        floor, before = level(baseline, "random_init", probe, k), level(baseline, "pretrained", probe, k)
        if not measured(summary, probe) or math.isnan(floor) or math.isnan(before):
            continue
        lowest = summary.loc[summary[probe.accuracy].idxmin()]
        share = (before - lowest[probe.accuracy]) / (before - floor) if before > floor else math.nan
        below = (", below the random-init level: the frozen head reads features it was not fitted on"
                 if share > 1 and probe is HEAD else "")
        parts.append(f"{probe.words} to {lowest[probe.accuracy]:.2f}% ({lowest['label']}; {before:.2f}% before, "
                     f"{floor:.2f}% for a random-init network: {share:.0%} of the learned margin{below})")
    if not parts:
        return "*The baseline record has no reference levels, so the control cannot be read against them.*"
    return ("**Positive control.** Runs built to wreck the pre-trained representation bring "
            + "; ".join(parts) + ". So each probe can fall to about the random-init level when what pre-training "
            "taught is gone: a small drop in a real run reads as little forgotten, not as a blind probe.")


HEADLINE_LABELS = ("Full", "LoRA r=8", "Block exp. p=2")  # one configuration of each of the paper's families


def headline(frame: pd.DataFrame, baseline: dict | None, k: int = 20, labels=HEADLINE_LABELS) -> str:
    """The page's first answer: the share of the learned margin each headline configuration loses, by probe (Markdown)."""
    margins = margin_table(frame, baseline, k)
    drops = label_summary(frame).set_index("label")
    found = [label for label in labels if label in margins.index]
    if margins.empty or not found:
        return "*These records have no reference levels or none of the headline configurations; see the table below.*"
    lines = []
    for label in found:
        parts = []
        for probe in (KNN, HEAD, INSTANCE):
            column = f"{probe.name}: share of margin lost"
            if column in margins.columns and not math.isnan(margins.loc[label, column]):
                parts.append(f"{margins.loc[label, column]:.0%} by {probe.words} "
                             f"({drops.loc[label, probe.drop]:.2f} points)")
        lines.append(f"- **{label}** loses " + ", ".join(parts) + ".")
    seeds = int(drops.loc[found, "n"].min())
    return "\n".join(lines) + f"\n\nMeans over {seeds} or more seeds; the tables below give every configuration."


def control_frame(runs: list[dict], k: int = 20) -> pd.DataFrame:
    """The positive control's records as `records_frame` rows, labelled as controls with their rate
    ("Control: Full, lr 0.15"), family "control": never confused with the real configuration of a method."""
    from vitcf.engine.records import records_frame

    frame = records_frame(runs, k=k)
    if frame.empty:
        return frame
    rates = {r["run"]: r["config"]["train"]["lr"] for r in runs}
    return frame.assign(label=[f"Control: {label}, lr {rates[run]:g}" for label, run in zip(frame["label"], frame["run"])],
                        family="control")
