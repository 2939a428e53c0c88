"""Run records and the paper's numbers as pandas frames: one row per run, configuration or design point.

Every view of the book reads the records through one of these conversions (or through
`vitcf.book.curve_frames`, for what the records hold over training steps and the analyses).
`records_frame` is the base: one row per run record, each probe of the pre-training domain with its
drop; the others add what a page needs (a run's rate and schedule, the design space's axes, the near
and far domains side by side, the headline's intervals) or give the paper's numbers the same columns.
"""

from __future__ import annotations

import json
import math

import pandas as pd

from vitcf.base.paper import DINO_VITB16_KNN, PAPER_FIGURE, PAPER_ROWS
from vitcf.base.uncertainty import Paired, bracket
from vitcf.book import evidence
from vitcf.book.stats import HEAD, INSTANCE, KNN, LEVELS, PROBES, label_summary, measured
from vitcf.engine.presets import Preset
from vitcf.model.methods import make_method
from vitcf.model.params import parse_count


def _instance_columns(instance: dict | None, k: int) -> dict:
    """The instance-retrieval probe's columns (NaN for a record made before it existed)."""
    if instance is None:
        return {"instance_after": float("nan"), "instance_baseline": float("nan"), "instance_drop": float("nan")}
    after, base = instance["after"][str(k)], instance["baseline"][str(k)]
    return {"instance_after": after, "instance_baseline": base, "instance_drop": base - after}


def records_frame(runs: list[dict], k: int = 20) -> pd.DataFrame:
    """One row per run record, the columns the book's tables and plots use.

    `k` picks the k-NN neighbourhood reported as the pre-training-domain accuracy (DINO's headline
    k is 20); every k is still available in the `knn_<k>` columns. Both probes of the pre-training
    domain are here, each with its drop (baseline - after, points): the k-NN probe (`pretrain_knn`,
    `drop`), the linear head fitted on the pre-trained features (`linear_head_after`, `linear_head_drop`)
    and the instance-retrieval probe at the same k (`instance_after`, `instance_drop`; NaN where not measured);
    beside the frozen head, a head re-fitted on the run's own bank features (`linear_head_refit_after`,
    `linear_head_refit_drop`, against the same pre-trained level; NaN in records made before it existed).
    """
    rows = []
    for record in runs:
        metrics = record["metrics"]
        head = metrics["linear_head"]
        knn = {int(key): value for key, value in metrics["knn"].items()}
        base = {int(key): value for key, value in metrics["knn_baseline"].items()}
        if k not in knn:
            raise ValueError(f"record {record['run']} has no k-NN result for k={k}; it has k in {sorted(knn)}")
        row = {
            "run": record["run"], "preset": record["preset"], "method": record["method"],
            "family": record["family"], "label": record["label"],
            "hparams": json.dumps(record["hparams"], sort_keys=True), "seed": record["seed"],
            "trainable_params": record["trainable_params"],
            "lr": ((record.get("config") or {}).get("train") or {}).get("lr", math.nan),
            "new_domain_accuracy": metrics["new_domain_accuracy"],
            "pretrain_knn": knn[k], "pretrain_knn_baseline": base[k],
            "drop": base[k] - knn[k], "relative_drop": (base[k] - knn[k]) / base[k] if base[k] else 0.0,
            "linear_head_after": head["after"], "linear_head_baseline": head["baseline"],
            "linear_head_drop": head["baseline"] - head["after"],
            "linear_head_refit_after": head.get("refit", math.nan),
            "linear_head_refit_drop": head["baseline"] - head.get("refit", math.nan),
            **_instance_columns(metrics.get("instance"), k),
            "selection": record["config"]["selection"],
            "train_seconds": record["timings"]["train_seconds"],
            "images_per_second": record["timings"]["images_per_second"],
        }
        row.update({f"knn_{key}": value for key, value in knn.items()})
        rows.append(row)
    return pd.DataFrame(rows)


# --- the paper's numbers ----------------------------------------------------------------------------

def paper_frame() -> pd.DataFrame:
    """The paper's reported points (PAPER_ROWS) in the columns of `records_frame`.

    new_domain_accuracy is the CIFAR-100 accuracy and pretrain_knn the IN-1K k-NN accuracy after
    fine-tuning; trainable_params is the count as printed in the paper (its nominal value), which is
    what a reader of the paper compares with.
    """
    rows = []
    for row in PAPER_ROWS:
        method = make_method(row.method, **row.hparams)
        rows.append({
            "label": method.label, "method": row.method, "family": method.family,
            "trainable_params": parse_count(row.params_text),
            "new_domain_accuracy": row.cifar100, "pretrain_knn": row.in1k, "mean": row.mean,
        })
    return pd.DataFrame(rows)


def paper_chart_frame() -> pd.DataFrame:
    """The paper's points in the columns `vitcf.book.charts.tradeoff_chart` draws, against DINO's 76.1 k-NN."""
    frame = paper_frame()
    return frame.assign(pretrain_knn_baseline=DINO_VITB16_KNN, drop=DINO_VITB16_KNN - frame["pretrain_knn"])


def paper_figure_frame() -> pd.DataFrame:
    """The paper's figure for four more new domains (approximate values read off it), one row per point."""
    return pd.DataFrame([{"new domain": domain, "method": method, "new-domain accuracy (%)": new,
                          "IN-1K k-NN (%)": knn, "preset": f"paper-{domain}"}
                         for domain, points in PAPER_FIGURE.items() for method, new, knn in points])


# --- what a page adds to the records' frame -----------------------------------------------------------

def with_levels(frame: pd.DataFrame, baseline: dict | None, k: int = 20) -> pd.DataFrame:
    """`frame` with each probe's reference levels from the folder's baseline record (raw pixels and a
    random-init network on the same bank and queries) as columns `<probe accuracy>_<level>`."""
    levels = (baseline or {}).get("levels") or {}
    columns = {}
    for level, _ in LEVELS:
        scores = levels.get(level) or {}
        for probe, key in ((KNN, "knn"), (HEAD, "linear_head"), (INSTANCE, "instance")):
            value = scores.get(key)
            if isinstance(value, dict):
                value = value.get(str(k), value.get(k))
            if value is not None:
                columns[f"{probe.accuracy}_{level}"] = float(value)
    return frame.assign(**columns)


def with_control(frame: pd.DataFrame, control: pd.DataFrame | None) -> pd.DataFrame:
    """The core grid's frame with the positive control's rows after it (family "control")."""
    return frame if control is None or control.empty else pd.concat([frame, control], ignore_index=True)


def control_frame(runs: list[dict], k: int = 20) -> pd.DataFrame:
    """The positive control's records as `records_frame` rows, labelled as controls with their rate
    ("Control: Full, lr 0.15"), family "control": never confused with the real configuration of a method."""
    frame = records_frame(runs, k=k)
    if frame.empty:
        return frame
    rates = {r["run"]: r["config"]["train"]["lr"] for r in runs}
    return frame.assign(label=[f"Control: {label}, lr {rates[run]:g}" for label, run in zip(frame["label"], frame["run"])],
                        family="control")


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


NEAR, FAR = "digits (near)", "glyphs (far)"  # how the pages name the two new domains


def domains_frame(far: pd.DataFrame, near: pd.DataFrame) -> pd.DataFrame:
    """One row per (configuration, domain, probe) present in both domains' frames: the new-domain accuracy
    and the probe's drop, means over seeds."""
    rows = []
    for domain, frame in ((NEAR, near), (FAR, far)):
        summary = label_summary(frame)
        for probe in PROBES:
            if not measured(summary, probe):
                continue
            for _, row in summary.iterrows():
                rows.append({"label": row["label"], "family": row["family"], "domain": domain, "probe": probe.name,
                             "drop": row[probe.drop], "new_domain_accuracy": row["new_domain_accuracy"]})
    frame = pd.DataFrame(rows, columns=["label", "family", "domain", "probe", "drop", "new_domain_accuracy"])
    both = set(label_summary(far)["label"]) & set(label_summary(near)["label"])
    return frame[frame["label"].isin(both)].reset_index(drop=True)


# --- the design space around the paper's rows ------------------------------------------------------

DESIGN_AXES = {  # method -> (axis title, the hyperparameter along it, the one telling series apart)
    "lora": ("LoRA: rank r", "r", "target"),
    "top_k": ("Top-k: blocks trained k", "k", None),
    "block_expansion": ("Block expansion: copies p", "p", "placement"),
    "surgical": ("Surgical: block trained", "block", None),
}
SERIES_NAMES = {"qv": "q, v (paper)", "qkv": "fused qkv", "all": "every linear layer",
                "spread": "spread (paper)", "top": "stacked on top"}


def _probe_values(metrics: dict, k: int) -> dict[str, float]:
    """A record's accuracy and drop by each probe it carries, under each `Probe`'s column names."""
    knn = {int(key): value for key, value in metrics["knn"].items()}
    base = {int(key): value for key, value in metrics["knn_baseline"].items()}
    values = {KNN.accuracy: knn[k], KNN.drop: base[k] - knn[k],
              HEAD.accuracy: metrics["linear_head"]["after"],
              HEAD.drop: metrics["linear_head"]["baseline"] - metrics["linear_head"]["after"],
              INSTANCE.accuracy: math.nan, INSTANCE.drop: math.nan}
    instance = metrics.get("instance") or {}
    if instance.get("after") and instance.get("baseline"):  # older records have no instance probe
        after, before = instance["after"][str(k)], instance["baseline"][str(k)]
        values |= {INSTANCE.accuracy: after, INSTANCE.drop: before - after}
    return values


# design_frame's spread column of each probe's accuracy (the k-NN and head names predate the third probe).
DESIGN_SD = {KNN.name: "pretrain_knn_sd", HEAD.name: "linear_head_sd", INSTANCE.name: "instance_sd"}


def design_frame(runs: list[dict], k: int = 20) -> pd.DataFrame:
    """One row per design-space configuration (mean and sd over seeds) on its axis of the design space.

    Every probe of the pre-training domain: each probe's accuracy, its sd over seeds (`DESIGN_SD`)
    and its drop, under the probe's `Probe` column names (k-NN: `pretrain_knn`, `drop`); the instance
    probe's hold NaN for records made before it. Records of methods with no design axis (full,
    linear) are left out; so is nothing else. A series mixing learning rates would compare two
    things at once, so it is an error.
    """
    rows = []
    for record in runs:
        if record["method"] not in DESIGN_AXES:
            continue
        axis, along, split = DESIGN_AXES[record["method"]]
        config = make_method(record["method"], **record["hparams"])
        series = getattr(config, split) if split else "-"
        value = getattr(config, along) + (along == "block")  # blocks counted from 1
        rows.append({"axis": axis, "value": value, "series": SERIES_NAMES.get(series, series),
                     "label": config.label, "family": record["family"], "seed": record["seed"],
                     "lr": record["config"]["train"]["lr"], "trainable_params": record["trainable_params"],
                     "new_domain_accuracy": record["metrics"]["new_domain_accuracy"],
                     **_probe_values(record["metrics"], k)})
    probe_columns = [column for probe in PROBES for column in (probe.accuracy, DESIGN_SD[probe.name], probe.drop)]
    columns = ["axis", "value", "series", "label", "family", "lr", "trainable_params", "seeds",
               "new_domain_accuracy", "new_domain_sd", *probe_columns]
    if not rows:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(rows)
    lrs = frame.groupby(["axis", "series"])["lr"].nunique()
    if (lrs > 1).any():
        mixed = [f"{axis} / {series}" for axis, series in lrs[lrs > 1].index]
        raise ValueError(f"design-space series {mixed} mix learning rates; compare one rate per series")
    grouped = frame.groupby(["axis", "value", "series", "label", "family", "lr", "trainable_params"], as_index=False)
    aggregates = {"seeds": ("seed", "nunique"), "new_domain_accuracy": ("new_domain_accuracy", "mean"),
                  "new_domain_sd": ("new_domain_accuracy", "std")}
    for probe in PROBES:
        aggregates |= {probe.accuracy: (probe.accuracy, "mean"), DESIGN_SD[probe.name]: (probe.accuracy, "std"),
                       probe.drop: (probe.drop, "mean")}
    summary = grouped.agg(**aggregates)
    order = {title: i for i, (title, _, _) in enumerate(DESIGN_AXES.values())}
    return summary.sort_values(["axis", "series", "value"], key=lambda c: c.map(order) if c.name == "axis" else c,
                               ignore_index=True)[columns]


def before_finetuning(baseline: dict | None, k: int = 20) -> dict[str, float]:
    """The pre-trained backbone's accuracy by each probe its folder's baseline record holds, by probe name."""
    if not baseline:
        return {}
    before = {KNN.name: baseline["knn"][str(k)]}
    if baseline.get("linear_head") is not None:
        before[HEAD.name] = baseline["linear_head"]
    if (baseline.get("instance") or {}).get(str(k)) is not None:
        before[INSTANCE.name] = baseline["instance"][str(k)]
    return before


# --- the headline: what each configuration learnt and forgot, with intervals ----------------------------

LEARNT = "learnt: new-domain accuracy (%)"
HEADLINE_PROBES = (KNN.name, INSTANCE.name)  # the paper's probe, and the fine-grained one with room to fall


def forgot(probe: str) -> str:
    """The headline's name of what `probe` measures: "forgot: k-NN drop (points)"."""
    return f"forgot: {probe} drop (points)"


def headline_frame(runs: list[dict], baseline: dict | None, k: int = 20) -> pd.DataFrame:
    """One row per (configuration, measure): the new-domain accuracy and the drop on each probe of
    `HEADLINE_PROBES`, each with its 95% interval, where the records carry per-query correctness."""
    family = {r["label"]: r["family"] for r in runs}
    rows = []
    learnt = evidence.correctness(runs, evidence.NEW_DOMAIN, k)
    if learnt:
        paired = Paired(learnt)
        for label in evidence.ordered(runs, learnt):
            found = paired.accuracy(label)
            rows.append({"label": label, "measure": LEARNT, "value": found.estimate, "low": found.low,
                         "high": found.high, "seeds": learnt[label].shape[0]})
    drops = evidence.drop_table(runs, baseline, k, probes=HEADLINE_PROBES)
    rows += [{"label": row.label, "measure": forgot(row.probe), "value": row.drop, "low": row.low,
              "high": row.high, "seeds": row.seeds} for row in drops.itertuples()]
    frame = pd.DataFrame(rows, columns=["label", "measure", "value", "low", "high", "seeds"])
    return frame.assign(family=frame["label"].map(family),
                        interval=[bracket(v, lo, hi) for v, lo, hi in zip(frame["value"], frame["low"], frame["high"])])
