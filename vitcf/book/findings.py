"""The evidence behind the discussion notes: each seed observation answered from the run records.

Every function takes the records (as `vitcf.engine.records.records_frame` rows) and returns Markdown built
from them, so the discussion's numbers are the runs' numbers. A function whose configurations are
missing from the records says which ones instead of guessing. Where the records hold both probes of
the pre-training domain (`vitcf.book.plots.PROBES`), the linear head's numbers stand beside the k-NN
probe's; the paper's reported numbers have the k-NN probe's alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
import torch

from vitcf.book import evidence
from vitcf.model.backbones import create_backbone, get_spec
from vitcf.model.methods import make_method
from vitcf.book.plots import DESIGN_AXES, HEAD, INSTANCE, KNN, PROBES, has_head, label_summary, measured as is_measured, rank_methods
from vitcf.base.uncertainty import bracket

WEIGHTS = tuple(i / 20 for i in range(21))  # the chart's slider positions: 0, 0.05, ..., 1


def _rows(frame: pd.DataFrame, labels: list[str]) -> tuple[pd.DataFrame | None, str | None]:
    summary = label_summary(frame).set_index("label")
    missing = [label for label in labels if label not in summary.index]
    if missing:
        return None, f"*These records lack {', '.join(missing)}, which this note compares; run the whole grid.*"
    return summary, None


def first_place_weights(frame: pd.DataFrame, label: str) -> list[float]:
    """The slider positions w at which `label` ranks first by the trade-off score."""
    return [w for w in WEIGHTS if rank_methods(frame, w).iloc[0]["label"] == label]


def _range(rows: pd.DataFrame, column: str) -> str:
    return f"{rows[column].min():.2f} to {rows[column].max():.2f}"


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


@dataclass(frozen=True)
class RevertCheck:
    """What removing a method's additions gives back, checked on a freshly built backbone."""

    label: str
    tensors: int  # backbone tensors compared (the classifier excluded)
    max_abs_difference: float


def revert_checks(backbone: str, seed: int = 0) -> list[RevertCheck]:
    """Apply LoRA r=8 and block expansion p=2, scramble every trainable tensor, remove the additions.

    Compares the backbone's weights (not the classifier, which the new task owns) with the ones it
    started from. Random initial weights suffice: removal is exact or not whatever the values.
    """
    checks = []
    for method in (make_method("lora", r=8), make_method("block_expansion", p=2)):
        torch.manual_seed(seed)
        model = create_backbone(backbone, num_classes=3)
        before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("head.")}
        adapted = method.apply(model)
        generator = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for param in adapted.parameters():
                if param.requires_grad:  # "training": every trainable tensor moves far from its start
                    param.add_(torch.randn(param.shape, generator=generator))
        after = method.revert(adapted).state_dict()
        if set(after) - {k for k in after if k.startswith("head.")} != set(before):
            raise AssertionError(f"{method.label}: revert changed the backbone's tensor names")
        worst = max((after[k] - v).abs().max().item() for k, v in before.items())
        checks.append(RevertCheck(method.label, len(before), worst))
    return checks


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
        + (f" (on {HEAD.words}, block expansion's from {_range(blocks, HEAD.drop)}, LoRA's from "
           f"{_range(lora, HEAD.drop)})" if has_head(summary) else "")
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
    from vitcf.model.params import paper_table

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


# --- forgetting over steps and the design space ---------------------------------------------------

EARLY_STEP = 10  # the abstract's claim: full fine-tuning loses most of the pre-training domain within 10 steps


# The forgetting curves' columns (`vitcf.book.plots.forgetting_curve_frame`) per probe, k-NN first.
CURVE_COLUMNS = ((KNN.name, "knn"), (HEAD.name, "linear_head"), (INSTANCE.name, "instance"))


def _early(run: pd.DataFrame, column: str, by: int) -> tuple | None:
    """One run's curve in `column`: (at step 0, at the last probe in 1..`by`, that step, at the last
    probe, that step), or None when it was not probed at step 0 and at some step in 1..`by`."""
    run = run.dropna(subset=[column]).sort_values("step")
    early = run[(run["step"] >= 1) & (run["step"] <= by)]
    if 0 not in set(run["step"]) or early.empty:
        return None
    return (float(run.loc[run["step"] == 0, column].iloc[0]), float(early[column].iloc[-1]),
            int(early["step"].iloc[-1]), float(run[column].iloc[-1]), int(run["step"].iloc[-1]))


def early_forgetting(curves: pd.DataFrame, k: int = 20, by: int = EARLY_STEP) -> pd.DataFrame:
    """Per configuration (mean over seeds) and per probe: the accuracy at step 0, at the last probe at
    or before step `by`, and at the last probe; and the share of the whole drop already lost by `by`.

    `curves` is `vitcf.book.plots.forgetting_curve_frame`'s. Only runs probed at step 0 (or filled in
    from their baseline) and at some step in 1..`by` count. Columns are named by probe ("k-NN at 0",
    "linear head share lost by"); a configuration whose curves lack the linear head (older records)
    has none of its runs in "linear head seeds" and NaN in its other linear-head columns.
    """
    def named(probe: str) -> list[str]:
        return [f"{probe} seeds", f"{probe} at 0", f"{probe} by step {by}", f"{probe} final",
                f"{probe} share lost by"]

    columns = ["label", "family", "step", "last step", *(c for probe, _ in CURVE_COLUMNS for c in named(probe))]
    at_k = curves[curves["k"] == k]
    at_k = at_k.assign(**{column: math.nan for _, column in CURVE_COLUMNS if column not in at_k.columns})
    rows = []
    for label, runs in at_k.groupby("label", sort=False):
        row = {"label": label, "family": runs["family"].iloc[0]}
        for probe, column in CURVE_COLUMNS:
            per_seed = [found for _, run in runs.groupby("run") if (found := _early(run, column, by)) is not None]
            start, early, step, final, last = (pd.Series(values, dtype=float).mean()
                                               for values in (zip(*per_seed) if per_seed else [()] * 5))
            drop = start - final
            row |= dict(zip(named(probe), (len(per_seed), start, early, final,
                                           (start - early) / drop if drop > 0 else math.nan)))
            if probe == KNN.name:
                row |= {"step": step, "last step": last}
        if row[f"{KNN.name} seeds"]:
            rows.append(row)
    table = pd.DataFrame(rows, columns=columns)
    return table.astype({"step": int, "last step": int}) if not table.empty else table


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
        return "*No design-space record yet: `vitcf sweep --preset <preset> --grid design` makes them.*"
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

    `frame` is `vitcf.book.plots.design_frame`'s (means over seeds). With `runs` (the design records), each
    probe's gap between the value that kept most and the one that kept least comes with its paired
    bootstrap interval (`vitcf.book.evidence`), where the records carry per-query correctness.
    """
    from scipy.stats import spearmanr

    if frame.empty:
        return "*No design-space record yet: `vitcf sweep --preset <preset> --grid design` makes them.*"
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
            f"from {_range(summary, KNN.drop)} points and the one measured by {HEAD.words} from "
            f"{_range(summary, HEAD.drop)}. {most['label']} loses the most by the linear head: "
            f"{most[HEAD.drop]:.2f} points, against {most[KNN.drop]:.2f} by the k-NN probe.")
    if len(summary) >= 3 and summary[KNN.drop].nunique() > 1 and summary[HEAD.drop].nunique() > 1:
        from scipy.stats import spearmanr

        rho = spearmanr(summary[KNN.drop], summary[HEAD.drop]).statistic
        text += (f" The two probes order the configurations by how much they forget with a Spearman rank "
                 f"correlation of {rho:+.2f}.")
    if is_measured(summary, INSTANCE):
        most = summary.loc[summary[INSTANCE.drop].idxmax()]
        text += (f" By {INSTANCE.words}, which asks whether a view of an image still finds the other views of the "
                 f"same image, the drop ranges from {_range(summary, INSTANCE.drop)} points out of "
                 f"{summary[INSTANCE.baseline].mean():.2f}%; {most['label']} loses the most there, "
                 f"{most[INSTANCE.drop]:.2f} points.")
    return text


# --- the paper's claims, tested on its numbers and on ours -------------------------------------------

def claims(frame: pd.DataFrame, probe: str = KNN.name) -> list[dict]:
    """The paper's headline claims, each tested on `frame` (the paper's reported numbers, or our records)
    with one probe of the pre-training domain (a `vitcf.book.plots.PROBES` name; the paper's numbers have the
    k-NN probe's only): [{"claim", "holds" (bool, or None when the rows or the probe's values are
    missing), "evidence", "forgetting" (whether the claim reads the probe; the others are about the
    new domain alone)}]."""
    probes = {p.name: p for p in PROBES}
    if probe not in probes:
        raise ValueError(f"unknown probe {probe!r}; allowed: {', '.join(probes)}")
    chosen = probes[probe]
    summary = label_summary(frame).set_index("label")
    measured = is_measured(summary, chosen)
    kept, drop = chosen.accuracy, chosen.drop
    fam = {name: summary[summary["family"] == name] for name in ("standard", "LoRA", "block expansion")}
    out = []

    def add(claim, needed, test, forgetting=False):
        if not all(label in summary.index for label in needed) or any(f.empty for f in fam.values()):
            holds, evidence = None, "rows missing from these records"
        elif forgetting and not measured:
            holds, evidence = None, f"no {chosen.adjective} probe in these numbers"
        else:
            holds, evidence = test()
            holds = bool(holds)
        out.append({"claim": claim, "holds": holds, "evidence": evidence, "forgetting": forgetting})

    def most_forgetting():
        worst = summary[kept].idxmin()
        return worst == "Full", (f"lowest pre-training-domain {chosen.adjective} accuracy: {worst} "
                                 f"({summary.loc[worst, kept]:.2f}%); Full {summary.loc['Full', kept]:.2f}%")

    def blocks_keep():
        lora, blocks = fam["LoRA"], fam["block expansion"]
        return blocks[drop].max() < lora[drop].min(), (
            f"{chosen.adjective} drops: block expansion {_range(blocks, drop)} points, LoRA {_range(lora, drop)}")

    def match_full(name):
        def test():
            best = fam[name]["new_domain_accuracy"].idxmax()
            value, full = summary.loc[best, "new_domain_accuracy"], summary.loc["Full", "new_domain_accuracy"]
            return value >= full, f"best {name} ({best}) {value:.2f}% against Full {full:.2f}% on the new domain"
        return test

    def linear_worst_learner():
        worst = summary["new_domain_accuracy"].idxmin()
        return worst == "Linear", (f"lowest new-domain accuracy: {worst} "
                                   f"({summary.loc[worst, 'new_domain_accuracy']:.2f}%)")

    add(evidence.CLAIM_FULL_MOST, ["Full"], most_forgetting, forgetting=True)
    add(evidence.CLAIM_BLOCKS_KEEP, [], blocks_keep, forgetting=True)
    add(evidence.CLAIM_LORA_MATCHES, ["Full"], match_full("LoRA"))
    add(evidence.CLAIM_BLOCKS_MATCH, ["Full"], match_full("block expansion"))
    add(evidence.CLAIM_LINEAR_LEAST, ["Linear"], linear_worst_learner)
    return out


def claims_with_intervals(frame: pd.DataFrame, runs: list[dict] | None, probe: str = KNN.name, k: int = 20) -> list[dict]:
    """`claims` on our records, each with a three-way verdict from its 95% interval where the records carry
    per-query correctness (`vitcf.book.evidence.claim_intervals`): "holds" (bool or None) becomes "verdict"
    (holds / does not hold / inconclusive, or "-"), the evidence gains the effect and its interval."""
    points = claims(frame, probe)
    tested = evidence.claim_intervals(runs, probe, k) if runs else [None] * len(points)
    out = []
    for point, found in zip(points, tested):
        if found is not None and found["verdict"] is not None and point["holds"] is not None:
            out.append({**point, "verdict": found["verdict"], "evidence": found["evidence"]})
        else:
            out.append({**point, "verdict": verdict(point["holds"]),
                        "evidence": point["evidence"] + ("" if not runs or point["holds"] is None
                                                         else " (no interval: these records carry no per-query correctness)")})
    return out


PAPER_VERDICT, OURS_KNN, OURS_HEAD = "paper (k-NN; it reports no linear head)", "ours, k-NN", "ours, linear head"
OURS_INSTANCE = "ours, instance retrieval"
NOT_A_PROBE = "n/a"  # a claim about the new domain alone: no probe of the pre-training domain enters


def verdict(holds) -> str:
    return "-" if holds is None else ("holds" if holds else "does not hold")


def claims_table(paper: pd.DataFrame, ours: pd.DataFrame | None, runs: list[dict] | None = None,
                 k: int = 20) -> pd.DataFrame:
    """Each claim: holds or not on the paper's numbers (k-NN, the only probe it reports) and on ours, by
    the k-NN probe, by the linear head and (where the records carry it) by the instance probe, with the
    evidence. Given the records (`runs`) with per-query correctness, our verdicts are three-way, from each
    claim's 95% interval (`claims_with_intervals`). A claim about the new domain alone does not depend on
    the probe: its other probes' cells say so ("n/a")."""
    theirs = claims(paper)
    missing = [{"holds": None, "verdict": "-", "evidence": "no records"}] * len(theirs)
    by_knn = claims_with_intervals(ours, runs, KNN.name, k) if ours is not None else missing
    by_head = claims_with_intervals(ours, runs, HEAD.name, k) if ours is not None else missing
    by_instance = claims_with_intervals(ours, runs, INSTANCE.name, k) if ours is not None else missing
    rows = []
    for p, o, h, i in zip(theirs, by_knn, by_head, by_instance):
        def cell(found):
            return (found["verdict"], found["evidence"]) if p["forgetting"] else (
                NOT_A_PROBE, "same as by the k-NN probe")
        head, instance = cell(h), cell(i)
        rows.append({"claim": p["claim"], PAPER_VERDICT: verdict(p["holds"]), "paper's numbers": p["evidence"],
                     OURS_KNN: o["verdict"], "our numbers, k-NN": o["evidence"],
                     OURS_HEAD: head[0], "our numbers, linear head": head[1],
                     OURS_INSTANCE: instance[0], "our numbers, instance retrieval": instance[1]})
    table = pd.DataFrame(rows).set_index("claim")
    if ours is None or not is_measured(ours, INSTANCE):  # older records have no instance probe: no empty columns
        table = table.drop(columns=[OURS_INSTANCE, "our numbers, instance retrieval"])
    return table


def agreement_note(paper: pd.DataFrame, ours: pd.DataFrame, runs: list[dict] | None = None, k: int = 20,
                   brief: bool = False) -> str:
    """Where our runs agree with the paper's claims and where they do not, by each probe (Markdown); an
    inconclusive verdict of ours is counted apart, neither as agreement nor as disagreement. `brief`:
    the counts by the k-NN probe only, in one sentence."""
    table = claims_table(paper, ours, runs, k)

    def differ(column: str) -> pd.DataFrame:
        return table[(table[PAPER_VERDICT] != table[column])
                     & ~table[column].isin(["-", NOT_A_PROBE, evidence.INCONCLUSIVE])]

    def listed(rows: pd.DataFrame, column: str, evidence: str) -> str:
        return "; ".join(f"*{claim}* ({row[PAPER_VERDICT]} in the paper, {row[column]} in ours: {row[evidence]})"
                         for claim, row in rows.iterrows())

    same = table[table[PAPER_VERDICT] == table[OURS_KNN]]
    open_ = table[table[OURS_KNN] == evidence.INCONCLUSIVE]
    counts = {v: int((table[OURS_KNN] == v).sum()) for v in (evidence.HOLDS, evidence.FAILS, evidence.INCONCLUSIVE)}
    text = (f"Of the paper's {len(table)} headline claims tested here, our runs agree on {len(same)} by "
            f"{KNN.words}, the one the paper used (ours: {counts[evidence.HOLDS]} hold, {counts[evidence.FAILS]} "
            f"{'does' if counts[evidence.FAILS] == 1 else 'do'} not hold, {counts[evidence.INCONCLUSIVE]} inconclusive)")
    if brief:
        return text + "."
    if not differ(OURS_KNN).empty:
        text += ". They disagree on: " + listed(differ(OURS_KNN), OURS_KNN, "our numbers, k-NN")
    if not open_.empty:
        text += (". Our records cannot decide: " + listed(open_, OURS_KNN, "our numbers, k-NN"))
    text += "."
    for probe, column in ((HEAD, OURS_HEAD), (INSTANCE, OURS_INSTANCE)):  # probes the paper did not use
        if column not in table:
            continue
        tested = table[~table[column].isin(["-", NOT_A_PROBE])]
        if tested.empty:
            continue
        agree = int((tested[column] == tested[PAPER_VERDICT]).sum())
        unsure = int((tested[column] == evidence.INCONCLUSIVE).sum())
        text += (f" The paper reports no {probe.adjective} probe; by ours, {agree} of its {len(tested)} claims about "
                 f"forgetting come out as in the paper" + (f" and {unsure} inconclusive" if unsure else ""))
        if not differ(column).empty:
            text += ", and these do not: " + listed(differ(column), column, f"our numbers, {probe.name}")
        text += "."
    return text


# --- the abstract's ten-iteration claim, on the full probe ----------------------------------------------

TEN_STEP_PROBES = ((KNN, "knn", True), (HEAD, "linear_head", False), (INSTANCE, "instance", True))  # (probe, key, per k)


def _full_probe_value(entry: dict, key: str, per_k: bool, k: int):
    value = entry.get(key)
    if value is None:
        return None
    return value.get(str(k), value.get(k)) if per_k else value


def ten_step_frame(runs: list[dict], k: int = 20, label: str = "Full") -> pd.DataFrame:
    """One row per (seed, probe, step) of `label`'s runs probed with the full probe during training
    (`metrics.full_probe_over_steps`): the accuracy, with step 0 the pre-trained backbone's (the baseline:
    no update has happened) and the run's end as its last row (step = the schedule's length)."""
    rows = []
    for record in runs:
        metrics = record["metrics"]
        over = metrics.get("full_probe_over_steps") or []
        if record["label"] != label or not over:
            continue
        ends = {"knn": (metrics["knn_baseline"], metrics["knn"]),
                "linear_head": (metrics["linear_head"]["baseline"], metrics["linear_head"]["after"]),
                "instance": ((metrics.get("instance") or {}).get("baseline"), (metrics.get("instance") or {}).get("after"))}
        last = record["config"]["train"]["steps"]
        for probe, key, per_k in TEN_STEP_PROBES:
            base, after = ends[key]
            if base is None:
                continue
            pick = (lambda v: v.get(str(k), v.get(k))) if per_k else (lambda v: v)
            points = [(0, pick(base))] + [(e["step"], _full_probe_value(e, key, per_k, k)) for e in over
                                          if e["step"] != 0] + [(last, pick(after))]
            rows += [{"seed": record["seed"], "probe": probe.name, "step": step, "accuracy": value}
                     for step, value in points if value is not None]
    return pd.DataFrame(rows, columns=["seed", "probe", "step", "accuracy"])


ABSTRACT_SHARE = evidence.ABSTRACT_SHARE


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
                f"{ABSTRACT_SHARE:.0%} would be {ABSTRACT_SHARE * at['before']:.2f} points: the claim "
                f"**{at['verdict']}** here; lost by step {last}: {bracket(end_row['drop'], end_row['low'], end_row['high'])} points.")
            continue
        text = (f"- **{probe.name}**: {start.mean():.2f}% before training, "
                f"{early.mean():.2f}% after step {by} (seeds {early.min():.2f} to {early.max():.2f}) and "
                f"{end.mean():.2f}% after step {last}: {lost.mean():.1%} of its accuracy lost by step {by} "
                f"({'more' if lost.mean() > ABSTRACT_SHARE else 'far less'} than the abstract's "
                f"{ABSTRACT_SHARE:.0%})")
        if share.notna().any():
            text += f", and {share.mean():.0%} of the run's whole drop of {whole.mean():.2f} points"
        lines.append(text + ".")
    seeds = frame["seed"].nunique()
    intervals = " Brackets: 95% paired bootstrap intervals over the probe's queries and the seeds." if len(drops) else ""
    return (f"Full fine-tuning probed with the final, full-size probes after steps "
            f"{', '.join(str(s) for s in sorted(set(frame['step'])) if 0 < s <= by)} ({seeds} seed(s); step 0 is "
            f"the pre-trained backbone itself).{intervals}\n\n" + "\n".join(lines))
