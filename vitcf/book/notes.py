"""The sentences the results and discussion pages print about what was learnt and forgotten (Markdown).

Every note takes the records (as `vitcf.book.frames.records_frame` rows, or what a page derived from them)
and returns Markdown built from them, so a page's numbers are the runs' numbers. A note whose
configurations are missing from the records says which ones instead of guessing. Where the records hold
several probes of the pre-training domain (`vitcf.book.stats.PROBES`), the other probes' numbers stand
beside the k-NN probe's; the paper's reported numbers have the k-NN probe's alone.
"""

from __future__ import annotations

import math

import pandas as pd

from vitcf.base.uncertainty import LEVEL, RESAMPLES, SEED, bracket
from vitcf.book import evidence
from vitcf.book.curve_frames import TEN_STEP_PROBES, ten_step_frame
from vitcf.book.frames import DESIGN_AXES, HEADLINE_PROBES, forgot
from vitcf.book.stats import (
    EARLY_STEP,
    HEAD,
    INSTANCE,
    KNN,
    PROBES,
    WEIGHTS,
    early_forgetting,
    first_place_weights,
    has_head,
    label_summary,
    level,
    margin_table,
    measured,
    range_text,
    rank_methods,
)
from vitcf.model.backbones import get_spec
from vitcf.model.params import paper_table
from vitcf.model.revert import RevertCheck


# --- the discussion's observations ------------------------------------------------------------------

def _rows(frame: pd.DataFrame, labels: list[str]) -> tuple[pd.DataFrame | None, str | None]:
    summary = label_summary(frame).set_index("label")
    missing = [label for label in labels if label not in summary.index]
    if missing:
        return None, f"*These records lack {', '.join(missing)}, which this note compares; run the whole grid.*"
    return summary, None


def _span(weights: list[float]) -> str:
    if not weights:
        return "at no position of the w slider"
    if len(weights) == len(WEIGHTS):
        return "at every position of the w slider"
    return f"for w from {weights[0]:.2f} to {weights[-1]:.2f}" if weights == [
        w for w in WEIGHTS if weights[0] <= w <= weights[-1]] else f"at w in {{{', '.join(f'{w:.2f}' for w in weights)}}}"


def linear_note(frame: pd.DataFrame) -> str:
    """Observation 1: why linear fine-tuning does well on the paper's mean."""
    summary, missing = _rows(frame, ["Linear", "Full"])
    if missing:
        return missing
    linear, full = summary.loc["Linear"], summary.loc["Full"]
    best_label = summary["new_domain_accuracy"].idxmax()
    balanced = rank_methods(frame, 0.5).set_index("label")
    head = (f"On {HEAD.words} it dropped {linear[HEAD.drop]:.2f} points and full fine-tuning "
            f"{full[HEAD.drop]:.2f}. " if has_head(summary) else "")
    return (
        f"Linear fine-tuning reached {linear['new_domain_accuracy']:.2f}% on the new domain: "
        f"{full['new_domain_accuracy'] - linear['new_domain_accuracy']:.2f} points below full fine-tuning "
        f"({full['new_domain_accuracy']:.2f}%) and {summary.loc[best_label, 'new_domain_accuracy'] - linear['new_domain_accuracy']:.2f} "
        f"below the best configuration ({best_label}). On the pre-training domain it kept "
        f"{linear['pretrain_knn']:.2f}% of k-NN accuracy against {linear['pretrain_knn_baseline']:.2f}% before fine-tuning, "
        f"a drop of {linear['drop']:.2f} points, while full fine-tuning dropped {full['drop']:.2f}. {head}"
        f"At the paper's equal weighting (w = 0.5) it ranks {int(balanced.loc['Linear', 'rank'])} of {len(balanced)}, "
        f"and it ranks first {_span(first_place_weights(frame, 'Linear'))}."
    )


def lora_note(frame: pd.DataFrame, checks: list[RevertCheck] | None = None) -> str:
    """Observation 2: LoRA forgets with its adapter loaded; what unloading it gives back.

    `checks` (from `revert_checks`) adds what removing the adapter restores in this code base;
    without them (e.g. for the paper's reported numbers) the note keeps to the loaded adapter.
    """
    summary = label_summary(frame).set_index("label")
    lora = summary[summary["family"] == "LoRA"]
    if lora.empty:
        return "*These records hold no LoRA run, which this note is about; run the whole grid.*"
    baseline = float(summary["pretrain_knn_baseline"].mean())
    ranks = ", ".join(f"{label} {row['drop']:.2f}" for label, row in lora.iterrows())
    text = (
        f"With the adapter loaded, LoRA lost on the pre-training domain (drop in k-NN points: {ranks}), "
        f"from {baseline:.2f}% before fine-tuning."
    )
    if has_head(summary):
        heads = ", ".join(f"{label} {row[HEAD.drop]:.2f}" for label, row in lora.iterrows())
        text += (f" On {HEAD.words} the drops were {heads} points, from {summary[HEAD.baseline].mean():.2f}% "
                 f"before fine-tuning.")
    if checks is None:
        return text
    checked = "; ".join(f"{c.label}: {c.tensors} backbone tensors, largest difference {c.max_abs_difference:g}"
                        for c in checks)
    exact = all(c.max_abs_difference == 0 for c in checks)
    if exact:
        text += (
            " Unloading the adapter gives back the pre-trained backbone bit for bit "
            f"({checked}; checked when this page was built, after moving every trainable tensor), so the "
            f"unloaded model scores exactly the baseline's {baseline:.2f}% on the pre-training domain. "
            "The same holds for block expansion once its added blocks are dropped."
        )
    else:
        text += f" Unloading did **not** restore the backbone exactly ({checked})."
    return text


def budget_note(frame: pd.DataFrame) -> str:
    """Observation 3: block expansion trains millions of parameters where LoRA trains thousands."""
    summary = label_summary(frame).set_index("label")
    lora = summary[summary["family"] == "LoRA"]
    blocks = summary[summary["family"] == "block expansion"]
    if lora.empty or blocks.empty:
        return "*These records lack LoRA or block expansion runs, which this note compares; run the whole grid.*"
    small_block = blocks.loc[blocks["trainable_params"].idxmin()]
    large_lora = lora.loc[lora["trainable_params"].idxmax()]
    best_lora = lora.loc[lora["new_domain_accuracy"].idxmax()]
    best_block = blocks.loc[blocks["new_domain_accuracy"].idxmax()]
    text = (
        f"The smallest block expansion ({small_block.name}) trains {small_block['trainable_params']:,} "
        f"parameters, {small_block['trainable_params'] / large_lora['trainable_params']:.1f} times the largest LoRA "
        f"({large_lora.name}, {large_lora['trainable_params']:,}). "
        f"Block expansion's drops on the pre-training domain range from {blocks['drop'].min():.2f} to "
        f"{blocks['drop'].max():.2f} points, LoRA's from {lora['drop'].min():.2f} to {lora['drop'].max():.2f}"
        + (f" (on {HEAD.words}, block expansion's from {range_text(blocks, HEAD.drop)}, LoRA's from "
           f"{range_text(lora, HEAD.drop)})" if has_head(summary) else "")
        + ". "
        f"On the new domain the best block expansion ({best_block.name}) reached "
        f"{best_block['new_domain_accuracy']:.2f}% and the best LoRA ({best_lora.name}) "
        f"{best_lora['new_domain_accuracy']:.2f}%."
    )
    if {"Top-3", "Block exp. p=3"} <= set(summary.index):
        top, block = summary.loc["Top-3"], summary.loc["Block exp. p=3"]
        text += (f" Top-3 ({top['trainable_params']:,} trainable) and Block exp. p=3 "
                 f"({block['trainable_params']:,}) dropped {top['drop']:.2f} and {block['drop']:.2f} points"
                 + (f" (on {HEAD.words}, {top[HEAD.drop]:.2f} and {block[HEAD.drop]:.2f})" if has_head(summary) else "")
                 + ".")
    return text


def vit_b_budget() -> str:
    """What the counts are on the paper's ViT-B/16 (exact, `vitcf params`) and what each adds to inference."""
    counts = {row["label"]: row["trainable"] for row in paper_table()}
    depth = get_spec("vit_base_patch16_224.dino").arch["depth"]
    return (
        f"On the paper's ViT-B/16 the exact counts are {counts['Block exp. p=1']:,} for Block exp. p=1 and "
        f"{counts['LoRA r=8']:,} for LoRA r=8 (classifier included in both), "
        f"{counts['Block exp. p=1'] / counts['LoRA r=8']:.1f} times as many. Top-3 and Block exp. p=3 train "
        f"exactly the same number, {counts['Top-3']:,} and {counts['Block exp. p=3']:,}: three transformer blocks and "
        f"the classifier each. The methods also differ after training: block expansion's added blocks stay in "
        f"the network (p=1 makes every forward pass {(depth + 1) / depth:.3f} times as deep, "
        f"p=4 {(depth + 4) / depth:.3f} times), while a LoRA adapter can be merged into the weights it adapts "
        f"and costs nothing at inference."
    )


# --- forgetting over training steps ---------------------------------------------------------------

def _apportion(what: str, row: pd.Series, probe: str, by: int) -> str:
    """How `what` (one probe's accuracy in an `early_forgetting` row) falls, and how much of it by `by`."""
    start, early, final = row[f"{probe} at 0"], row[f"{probe} by step {by}"], row[f"{probe} final"]
    text = (f"{what} goes from {start:.2f}% before training to {early:.2f}% after step {row['step']} and "
            f"{final:.2f}% after step {row['last step']}. ")
    if start - final <= 0:
        return text + "It does not fall over the run, so there is no forgetting to apportion."
    share = row[f"{probe} share lost by"]
    verdict = "most" if share > 0.5 else "less than half"
    return text + (f"By step {row['step']} it has lost {share:.0%} of its whole drop of {start - final:.2f} points: "
                   f"{verdict} of the forgetting happens within the first {by} steps on these records.")


def early_forgetting_note(curves: pd.DataFrame, k: int = 20, by: int = EARLY_STEP) -> str:
    """The abstract's claim about full fine-tuning, checked against the records on both probes (Markdown)."""
    table = early_forgetting(curves, k, by)
    full = table[table["label"] == "Full"]
    if full.empty:
        return (f"*None of these records is a full fine-tuning run probed at step 0 and within the first {by} "
                f"steps, so the claim cannot be checked on them; the preset's forgetting steps must include both.*")
    row = full.iloc[0]
    text = f"Full fine-tuning ({row[f'{KNN.name} seeds']} seed(s)): " + _apportion(
        f"the pre-training-domain k-NN accuracy (k={k})", row, KNN.name, by)
    for probe in (HEAD, INSTANCE):
        if row[f"{probe.name} seeds"]:
            text += f" On {probe.words} ({row[f'{probe.name} seeds']} seed(s)), " + _apportion(
                "the accuracy", row, probe.name, by)
    return text


def ten_step_note(runs: list[dict], k: int = 20, by: int = EARLY_STEP, baseline: dict | None = None) -> str:
    """The abstract's claim checked on the full probe at the first training steps of full fine-tuning (Markdown);
    given the folder's `baseline` and records with per-query correctness, each drop has its 95% interval and
    the claim a three-way verdict against the abstract's share of the pre-trained accuracy."""
    frame = ten_step_frame(runs, k)
    drops = evidence.early_drops(runs, baseline, k) if baseline else pd.DataFrame(columns=["probe", "step"])
    if frame.empty or by not in set(frame["step"]):
        return (f"*No full fine-tuning record here was probed with the full probe at step {by} (the preset's "
                "`full_probe_steps`), so the claim is checked on the smaller curve probe above only.*")
    lines = []
    for probe, _, _ in TEN_STEP_PROBES:
        rows = frame[frame["probe"] == probe.name]
        if rows.empty:
            continue
        last = int(rows["step"].max())
        per_seed = rows.pivot_table(index="seed", columns="step", values="accuracy")
        start, early, end = per_seed[0], per_seed[by], per_seed[last]
        lost = (start - early) / start
        whole = start - end
        share = ((start - early) / whole).where(whole > 0)
        judged = drops[drops["probe"] == probe.name].set_index("step")
        if by in judged.index and last in judged.index:
            at, end_row = judged.loc[by], judged.loc[last]
            lines.append(
                f"- **{probe.name}**: {at['before']:.2f}% before training; lost by step {by}: {bracket(at['drop'], at['low'], at['high'])} "
                f"points, {round(at['drop'] / at['before'], 3) + 0.0:.1%} of its accuracy, where the abstract's "
                f"{evidence.ABSTRACT_SHARE:.0%} would be {evidence.ABSTRACT_SHARE * at['before']:.2f} points: the claim "
                f"**{at['verdict']}** here; lost by step {last}: {bracket(end_row['drop'], end_row['low'], end_row['high'])} points.")
            continue
        text = (f"- **{probe.name}**: {start.mean():.2f}% before training, "
                f"{early.mean():.2f}% after step {by} (seeds {early.min():.2f} to {early.max():.2f}) and "
                f"{end.mean():.2f}% after step {last}: {lost.mean():.1%} of its accuracy lost by step {by} "
                f"({'more' if lost.mean() > evidence.ABSTRACT_SHARE else 'far less'} than the abstract's "
                f"{evidence.ABSTRACT_SHARE:.0%})")
        if share.notna().any():
            text += f", and {share.mean():.0%} of the run's whole drop of {whole.mean():.2f} points"
        lines.append(text + ".")
    seeds = frame["seed"].nunique()
    intervals = " Brackets: 95% paired bootstrap intervals over the probe's queries and the seeds." if len(drops) else ""
    return (f"Full fine-tuning probed with the final, full-size probes after steps "
            f"{', '.join(str(s) for s in sorted(set(frame['step'])) if 0 < s <= by)} ({seeds} seed(s); step 0 is "
            f"the pre-trained backbone itself).{intervals}\n\n" + "\n".join(lines))


# --- the design space and the probes ----------------------------------------------------------------

def _design_series(frame: pd.DataFrame, runs: list[dict] | None):
    """Each series of the design space with two values or more: (its name, its rows by value, its records)."""
    for (axis, series), rows in frame.groupby(["axis", "series"], sort=False):
        if len(rows) >= 2:
            name = axis.split(":")[0] + ("" if series == "-" else f" ({series})")
            yield name, rows.sort_values("value"), [r for r in runs or () if r["label"] in set(rows["label"])]


def _design_gap(rows: pd.DataFrame, ends: list[dict], probe, k: int):
    """The rows that kept most and least of the pre-training domain by `probe`, and the gap between them with
    its paired interval (None without per-query correctness)."""
    best, worst = rows.loc[rows[probe.accuracy].idxmax()], rows.loc[rows[probe.accuracy].idxmin()]
    return best, worst, evidence.gap(ends, probe.name, best["label"], worst["label"], k) if ends else None


def design_headline(frame: pd.DataFrame, runs: list[dict] | None = None, k: int = 20) -> str:
    """The design space in a few lines: for each probe, the knob whose range moved it most, with the gap's
    interval (Markdown)."""
    if frame.empty:
        raise ValueError("no design-space records to describe: a page shows `vitcf.book.pages.missing_runs` in their place")
    lines = []
    for probe in PROBES:
        found = [(name, *_design_gap(rows, ends, probe, k)) for name, rows, ends in _design_series(frame, runs)
                 if probe.accuracy in rows.columns and not rows[probe.accuracy].isna().any()]
        if not found:
            continue
        name, best, worst, gap = max(found, key=lambda f: f[1][probe.accuracy] - f[2][probe.accuracy])
        size = f"{gap} points" if gap is not None else f"{best[probe.accuracy] - worst[probe.accuracy]:.2f} points"
        clear = "" if gap is None or gap.low > 0 else ", no clear gap"
        knob = next(along for title, along, _ in DESIGN_AXES.values() if title == best["axis"])
        lines.append(f"- **{probe.name}**: {name} moves it most, from {best[probe.accuracy]:.2f}% at "
                     f"{knob}={best['value']} to {worst[probe.accuracy]:.2f}% at {knob}={worst['value']} "
                     f"({size}{clear}).")
    return ("**In short.** The knob that moved each probe of the pre-training domain most, between the value that "
            "kept most and the one that kept least (95% paired interval):\n\n" + "\n".join(lines))


def design_note(frame: pd.DataFrame, runs: list[dict] | None = None, k: int = 20) -> str:
    """Along each recorded axis of the design space: the range of the accuracies and how each probe's
    pre-training-domain accuracy moves with the axis (Spearman rank correlation), as Markdown bullets.

    `frame` is `vitcf.book.frames.design_frame`'s (means over seeds). With `runs` (the design records), each
    probe's gap between the value that kept most and the one that kept least comes with its paired
    bootstrap interval (`vitcf.book.evidence`), where the records carry per-query correctness.
    """
    from scipy.stats import spearmanr

    if frame.empty:
        raise ValueError("no design-space records to describe: a page shows `vitcf.book.pages.missing_runs` in their place")
    lines = []
    for name, rows, ends in _design_series(frame, runs):
        learnt = rows.loc[rows["new_domain_accuracy"].idxmax()]
        axis = rows["axis"].iloc[0]
        kept, trends = [], []
        for probe in PROBES:
            if probe.accuracy not in rows.columns or rows[probe.accuracy].isna().any():
                continue
            best, worst, gap = _design_gap(rows, ends, probe, k)
            kept.append(f"at {best['value']} ({best[probe.accuracy]:.2f}%) and least at {worst['value']} "
                        f"({worst[probe.accuracy]:.2f}%) by {probe.words}"
                        + ("" if gap is None else f" (gap {gap} points{'' if gap.low > 0 else ': no clear gap'})"))
            if len(rows) >= 3 and rows[probe.accuracy].nunique() > 1:
                rho = spearmanr(rows["value"], rows[probe.accuracy]).statistic
                trends.append(f"the {probe.adjective} accuracy {'rises' if rho > 0 else 'falls'} as the "
                              f"{axis.split(': ')[-1]} increases (Spearman rho {rho:+.2f} over {len(rows)} values)")
        lines.append(f"- **{name}**: kept most of the pre-training domain {', and most '.join(kept)}; learnt most "
                     f"at {learnt['value']} ({learnt['new_domain_accuracy']:.2f}% on the new domain)"
                     + "".join(f"; {trend}" for trend in trends) + ".")
    return "\n".join(lines) if lines else "*Every recorded axis has a single value so far.*"


def probes_note(frame: pd.DataFrame) -> str:
    """How far the two probes of the pre-training domain agree on these records (Markdown)."""
    summary = label_summary(frame)
    if not has_head(summary):
        return f"*These records carry no {HEAD.adjective} probe, so the two probes cannot be set side by side.*"
    most = summary.loc[summary[HEAD.drop].idxmax()]
    text = (f"Over the {len(summary)} configurations (means over seeds), the drop measured by {KNN.words} ranges "
            f"from {range_text(summary, KNN.drop)} points and the one measured by {HEAD.words} from "
            f"{range_text(summary, HEAD.drop)}. {most['label']} loses the most by the linear head: "
            f"{most[HEAD.drop]:.2f} points, against {most[KNN.drop]:.2f} by the k-NN probe.")
    if len(summary) >= 3 and summary[KNN.drop].nunique() > 1 and summary[HEAD.drop].nunique() > 1:
        from scipy.stats import spearmanr

        rho = spearmanr(summary[KNN.drop], summary[HEAD.drop]).statistic
        text += (f" The two probes order the configurations by how much they forget with a Spearman rank "
                 f"correlation of {rho:+.2f}.")
    if measured(summary, INSTANCE):
        most = summary.loc[summary[INSTANCE.drop].idxmax()]
        text += (f" By {INSTANCE.words}, which asks whether a view of an image still finds the other views of the "
                 f"same image, the drop ranges from {range_text(summary, INSTANCE.drop)} points out of "
                 f"{summary[INSTANCE.baseline].mean():.2f}%; {most['label']} loses the most there, "
                 f"{most[INSTANCE.drop]:.2f} points.")
    return text


# --- how far each probe can fall ---------------------------------------------------------------------

def control_note(baseline: dict | None, control: pd.DataFrame, k: int = 20) -> str:
    """One paragraph: whether the positive control brings each probe down to its random-init level (Markdown)."""
    if control.empty:
        raise ValueError("no positive-control records to describe: a page shows `vitcf.book.pages.missing_runs` in their place")
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


def margin_headline(frame: pd.DataFrame, baseline: dict | None, k: int = 20, labels=HEADLINE_LABELS) -> str:
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


# --- the headline's intervals and every pair of configurations ----------------------------------------

def headline_note(frame: pd.DataFrame, control: pd.DataFrame | None = None) -> str:
    """The figure in words (Markdown): the largest drop on each probe with its interval, the drops a probe
    cannot tell from none, and, from the positive control's frame, how far each probe can fall."""
    lines = []
    for probe in HEADLINE_PROBES:
        part = frame[frame["measure"] == forgot(probe)]
        if part.empty:
            continue
        most = part.loc[part["value"].idxmax()]
        unclear = part[(part["low"] <= 0) & (part["high"] >= 0)]["label"].tolist()
        text = (f"By {probe}, {most['label']} loses the most, {most['interval']} points; "
                + (f"{len(unclear)} of the {len(part)} configurations lose nothing the probe can tell from none "
                   f"({', '.join(unclear)})" if unclear else "every configuration's drop is clear of zero"))
        scale = None if control is None else control[control["measure"] == forgot(probe)]
        if scale is not None and not scale.empty:
            worst = scale.loc[scale["value"].idxmax()]
            text += f"; for scale, the positive control {worst['label']} loses {worst['interval']} points"
        lines.append(f"- {text}.")
    return "\n".join(lines)


def method_note() -> str:
    """How the intervals are made, in words (Markdown)."""
    return (f"Intervals are {LEVEL:.0%} paired bootstrap intervals ({RESAMPLES:,} resamples, generator seed {SEED}): "
            "every configuration is probed on the same images, so each resample draws one set of images and "
            "applies it to both sides of a comparison; seeds are the second source of variation, and each "
            "resample also draws a configuration's seeds with replacement before averaging them (a two-stage "
            "bootstrap). A verdict **holds** when the whole interval lies on the claim's side of its boundary, "
            "**does not hold** when it lies on the other side, and is **inconclusive** when it crosses it.")


def pairwise_note(frame: pd.DataFrame) -> str:
    """How many pairs differ after Holm's correction, per metric, from `pairwise_frame`'s rows (Markdown)."""
    parts = []
    for title, pairs in frame.groupby("metric", sort=False):  # each pair is there in both orientations
        parts.append(f"{int(pairs['differs'].sum()) // 2} of {len(pairs) // 2} pairs by {title.split(':')[0]}")
    if not parts:
        return ("*These records carry no per-query correctness, so no pair of configurations can be compared "
                "with intervals; `vitcf sweep` records it in every new run.*")
    return (f"Pairs of configurations whose difference holds after Holm's correction over all pairs of a metric "
            f"(p < {evidence.SIGNIFICANCE}): {'; '.join(parts)}.")
