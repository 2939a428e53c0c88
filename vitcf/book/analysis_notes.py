"""The beyond page's sentences (Markdown): what taking runs apart, their drift and interpolation show."""

from __future__ import annotations

import pandas as pd

from vitcf.book.curve_frames import drift_frame, interpolation_frame, reversibility_frame
from vitcf.book.notes import HEADLINE_LABELS

NEAR = 1.0  # points: a k-NN accuracy this close to the pre-trained backbone's counts as kept


def _range(values: pd.Series, unit: str = "%") -> str:
    low, high = values.min(), values.max()
    return f"{low:.2f}{unit}" if round(low, 2) == round(high, 2) else f"{low:.2f}-{high:.2f}{unit}"


def reversal_sentence(records: list[dict], k: int = 20) -> str:
    """Whether removing what each reversible run learnt gives back the pre-trained backbone on the
    pre-training domain, and what it leaves of the new domain."""
    frame = reversibility_frame(records, k)
    removed, adapted = frame[frame.state == "removed"], frame[frame.state == "adapted"]
    exact = (removed["drop"].abs() < 0.005) & (removed["linear_head_drop"].fillna(0).abs() < 0.005)
    merged = frame[frame.state == "merged"].set_index("run")["new_domain_accuracy"]
    same = (merged - adapted.set_index("run")["new_domain_accuracy"].reindex(merged.index)).abs().max()
    every = f"all {len(removed)} reversible runs" if len(removed) > 1 else "the one reversible run"
    kept = (f"gives back the pre-trained backbone exactly in {every} (k-NN and linear-head drop 0.00)"
            if exact.all() else
            f"gives back the pre-trained backbone exactly in {int(exact.sum())} of {len(removed)} reversible runs")
    merge = (" LoRA's merged weights score exactly as its adapter." if len(merged) and same < 0.005 else "")
    return (f"Removing what was learnt {kept}, and takes the new domain from {_range(adapted.new_domain_accuracy)} "
            f"down to {_range(removed.new_domain_accuracy)} (the run's classifier on the pre-trained features).{merge}")


def drift_sentence(runs: list[dict], labels=HEADLINE_LABELS) -> str | None:
    """Where each headline configuration's representation of the pre-training domain moved most."""
    frame = drift_frame(runs)
    if frame.empty:
        return None
    mean = frame.groupby(["label", "block"], sort=False)["cka"].mean().reset_index()
    parts = []
    for label in (label for label in labels if label in set(mean.label)):
        rows = mean[mean.label == label]
        low = rows.loc[rows.cka.idxmin()]
        parts.append(f"{label} at block {int(low.block)} ({low.cka:.2f})")
    return ("The representation moved most (linear CKA with the pre-trained backbone; 1: unchanged) for "
            + "; ".join(parts) + ".") if parts else None


def interpolation_sentence(records: list[dict], k: int = 20) -> str | None:
    """For each interpolated run: the most new-domain accuracy reached while k-NN accuracy stays within
    `NEAR` points of the pre-trained backbone's, against the fine-tuned end's."""
    frame = interpolation_frame(records, k)
    if frame.empty:
        return None
    parts = []
    for label, rows in frame.groupby("label", sort=False):
        mean = rows.groupby("alpha")[["new_domain_accuracy", "pretrain_knn"]].mean()
        start, end = mean.iloc[0], mean.iloc[-1]
        kept = mean[mean.pretrain_knn >= start.pretrain_knn - NEAR]
        best = kept.new_domain_accuracy.idxmax()
        parts.append(f"{label} keeps k-NN within {NEAR:g} point of the pre-trained backbone up to alpha = {best:g}, "
                     f"where it reaches {kept.new_domain_accuracy[best]:.2f}% on the new domain "
                     f"({end.new_domain_accuracy:.2f}% at alpha = 1, the fine-tuned run)")
    return "Along the interpolation, " + "; ".join(parts) + "."


def beyond_headline(found: dict[str, list[dict]], runs: list[dict], k: int = 20) -> str:
    """The beyond page's answer first (Markdown), from whichever analyses are recorded."""
    sentences = [reversal_sentence(found["reversibility"], k) if "reversibility" in found else None,
                 drift_sentence(runs), interpolation_sentence(found["interpolation"], k) if "interpolation" in found
                 else None]
    sentences = [s for s in sentences if s]
    return "**In short.** " + " ".join(sentences) if sentences else ""
