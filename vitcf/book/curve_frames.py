"""The records' curves and analyses as frames: probes over steps, pre-training, interpolation, reversibility, drift."""

from __future__ import annotations

import math

import pandas as pd

from vitcf.book.stats import CURVE_COLUMNS, HEAD, INSTANCE, KNN


# --- forgetting over training steps -------------------------------------------------------------

def forgetting_curve_frame(records: list[dict]) -> pd.DataFrame:
    """One row per (run, probed step, k): both probes' accuracy on the pre-training domain at that step.

    Records keep these under metrics.knn_over_steps when a run was asked for `forgetting_steps`;
    runs without them contribute no rows. `knn` is the k-NN probe's accuracy at that k;
    `linear_head` the linear-head probe's at that step (the same on every k's row), NaN where the
    record's curve has none (records made before the curves carried it); `instance` the instance-retrieval
    probe's at that k, NaN where not measured. A curve that was not
    probed at step 0 starts from the run's baseline there: before the first update every method
    computes exactly the pre-trained backbone's features (LoRA's B and block expansion's output
    projections start at zero; the tests hold this bit for bit), so the baseline is that step's
    measurement. `probed` tells them apart. That holds only where the curve was probed with the
    final probe; a run whose curve used a smaller probe (config.curve_probe) is drawn from its own
    probes alone.
    """
    rows = []
    for record in records:
        metrics = record["metrics"]
        over = metrics.get("knn_over_steps") or []
        same_probe = record.get("config", {}).get("curve_probe") is None
        if over and same_probe and all(entry["step"] != 0 for entry in over):
            start = {"step": 0, "knn": metrics["knn_baseline"], "probed": False}
            if any("linear_head" in entry for entry in over):
                start["linear_head"] = metrics["linear_head"]["baseline"]
            if any("instance" in entry for entry in over):
                start["instance"] = metrics["instance"]["baseline"]
            over = [start, *over]
        for entry in over:
            for k, accuracy in entry["knn"].items():  # k is a string once the record went through JSON
                rows.append({"run": record["run"], "preset": record["preset"], "label": record["label"],
                             "family": record["family"], "seed": record["seed"], "step": entry["step"],
                             "k": int(k), "knn": accuracy, "linear_head": entry.get("linear_head", math.nan),
                             "instance": (entry.get("instance") or {}).get(k, math.nan),
                             "probed": entry.get("probed", True)})
    return pd.DataFrame(rows, columns=CURVE_FRAME_COLUMNS)


CURVE_FRAME_COLUMNS = ["run", "preset", "label", "family", "seed", "step", "k", "knn", "linear_head", "instance",
                       "probed"]


def curves_frame(runs: list[dict], k: int = 20) -> pd.DataFrame:
    """One row per (run, probed step, probe): the drop since the run's own step-0 probe, in points.

    Read from `forgetting_curve_frame`. The curves use the preset's smaller curve probe, whose
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


# --- the backbone's pre-training ------------------------------------------------------------------

def pretrain_curve_frame(card: dict) -> pd.DataFrame:
    """The card's learning curve: one row per epoch with the loss and the subset k-NN accuracy."""
    epochs = (card.get("learning_curve") or {}).get("epochs") or []
    return pd.DataFrame(epochs, columns=["epoch", "loss", "knn"])


# --- analyses beyond the paper ---------------------------------------------------------------------

def _head_of(scores: dict) -> float:
    """The linear-head probe's accuracy in an analysis record's scores (NaN in a record without it)."""
    return scores.get("linear_head", math.nan)


def interpolation_frame(records: list[dict], k: int = 20) -> pd.DataFrame:
    """One row per (interpolation record, alpha): the new domain's accuracy and both probes' of the
    pre-training domain (`pretrain_knn`, `linear_head_after`) along the curve."""
    rows = []
    for record in records:
        for point in record["points"]:
            knn = {int(key): value for key, value in point["knn"].items()}
            if k not in knn:
                raise ValueError(f"interpolation record {record['run']} has no k-NN result for k={k}; it has {sorted(knn)}")
            rows.append({"run": record["run"], "preset": record["preset"], "label": record["label"],
                         "family": record["family"], "seed": record["seed"], "alpha": point["alpha"],
                         "new_domain_accuracy": point["new_domain_accuracy"], "pretrain_knn": knn[k],
                         "linear_head_after": _head_of(point)})
    return pd.DataFrame(rows, columns=["run", "preset", "label", "family", "seed", "alpha", "new_domain_accuracy",
                                       "pretrain_knn", "linear_head_after"])


def reversibility_frame(records: list[dict], k: int = 20) -> pd.DataFrame:
    """One row per (reversibility record, state): the new domain's accuracy and, for both probes of the
    pre-training domain, the accuracy, the baseline and the drop (NaN for the linear head in a record
    without it)."""
    rows = []
    for record in records:
        base = {int(key): value for key, value in record["baseline"]["knn"].items()}
        head_base = _head_of(record["baseline"])
        for state, scores in record["states"].items():
            knn = {int(key): value for key, value in scores["knn"].items()}
            rows.append({"run": record["run"], "label": record["label"], "seed": record["seed"], "state": state,
                         "new_domain_accuracy": scores["new_domain_accuracy"], "pretrain_knn": knn[k],
                         "pretrain_knn_baseline": base[k], "drop": base[k] - knn[k],
                         "linear_head_after": _head_of(scores), "linear_head_baseline": head_base,
                         "linear_head_drop": head_base - _head_of(scores)})
    return pd.DataFrame(rows, columns=["run", "label", "seed", "state", "new_domain_accuracy", "pretrain_knn",
                                       "pretrain_knn_baseline", "drop", "linear_head_after", "linear_head_baseline",
                                       "linear_head_drop"])


def drift_frame(records: list[dict]) -> pd.DataFrame:
    """One row per (run, pre-trained block): linear CKA with the pre-trained backbone (metrics.drift)."""
    rows = []
    for record in records:
        cka = (record["metrics"].get("drift") or {}).get("cka_per_block") or []
        rows += [{"run": record["run"], "preset": record["preset"], "label": record["label"], "family": record["family"],
                  "seed": record["seed"], "block": i + 1, "cka": value} for i, value in enumerate(cka)]
    return pd.DataFrame(rows, columns=["run", "preset", "label", "family", "seed", "block", "cka"])
