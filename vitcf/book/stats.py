"""The probes of the pre-training domain, the method families, and the statistics over a records frame.

Forgetting is measured by probes of the pre-training domain (`PROBES`), and every view that shows
what was kept shows them side by side: the k-NN probe (the paper's: does the neighbourhood structure
of the features still separate the pre-training classes?), the linear head fitted once on the
pre-trained features and applied, frozen, after fine-tuning (do the features still fit a readout
fitted before?), and instance retrieval (does a view of an image still find the other views of the
same image?). Numbers with no linear head (the paper's) have the k-NN probe alone.

Several seeds of one configuration are summed up as their mean with min and max (`label_summary`):
the question is how methods compare, and the spread says how far a single run can be trusted.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import pandas as pd

from vitcf.engine.presets import AXIS_FAMILIES
from vitcf.model.methods import make_method


# The paper's grouping, in its table order; then the positive control (runs built to wreck the representation).
FAMILIES = ("standard", "LoRA", "block expansion", "control")
FAMILY_COLOURS = {"standard": "#4c78a8", "LoRA": "#f58518", "block expansion": "#54a24b", "control": "#9d9d9d"}


HEADLINE_K = 20  # DINO's headline k-NN neighbourhood
# The five method families of the rate, schedule and resolution axes (`vitcf.engine.presets.AXIS_FAMILIES`).
AXIS_LABELS = tuple(make_method(method, **hparams).label for method, hparams in AXIS_FAMILIES)


FRAME_COLUMNS = ("label", "family", "trainable_params", "new_domain_accuracy", "pretrain_knn",
                 "pretrain_knn_baseline", "drop")


class Probe(NamedTuple):
    """A probe of the pre-training domain: its name and its columns in `records_frame`'s frame."""

    name: str
    accuracy: str
    drop: str
    baseline: str
    title: str  # the axis title of its accuracy

    @property
    def adjective(self) -> str:
        """'k-NN', 'linear-head' (as in 'linear-head accuracy')."""
        return self.name.replace(" ", "-")

    @property
    def words(self) -> str:
        """'the k-NN probe', 'the linear-head probe'."""
        return f"the {self.adjective} probe"


KNN = Probe("k-NN", "pretrain_knn", "drop", "pretrain_knn_baseline", "Pre-training-domain k-NN accuracy (%)")
HEAD = Probe("linear head", "linear_head_after", "linear_head_drop", "linear_head_baseline",
             "Pre-training-domain linear-head accuracy (%)")
INSTANCE = Probe("instance retrieval", "instance_after", "instance_drop", "instance_baseline",
                 "Pre-training-domain instance-retrieval accuracy (%)")
PROBES = (KNN, HEAD, INSTANCE)  # the paper's probe first


def measured(frame: pd.DataFrame, probe: Probe, columns: tuple[str, ...] | None = None) -> bool:
    """Whether `frame` holds `probe`'s values, in `columns` (default: its accuracy, drop and baseline).
    The k-NN probe always is; the paper's numbers have no other, and older records no instance probe."""
    columns = (probe.accuracy, probe.drop, probe.baseline) if columns is None else columns
    return all(column in frame.columns for column in columns) and bool(frame[probe.accuracy].notna().any())


def has_head(frame: pd.DataFrame, columns=(HEAD.accuracy, HEAD.drop, HEAD.baseline)) -> bool:
    """Whether `frame` holds the linear-head probe's values, in `columns` (the paper's numbers have none)."""
    return measured(frame, HEAD, columns)


def probes_of(frame: pd.DataFrame, with_baseline: bool = True) -> tuple[Probe, ...]:
    """The probes `frame` has values for (accuracy, drop and, if `with_baseline`, baseline): the k-NN
    probe always, the others where measured, in `PROBES` order."""
    def columns(probe: Probe) -> tuple[str, ...]:
        return (probe.accuracy, probe.drop, probe.baseline) if with_baseline else (probe.accuracy, probe.drop)

    return (KNN, *(p for p in PROBES[1:] if measured(frame, p, columns(p))))


def index_of(values) -> dict:
    """Each of `values` mapped to its position: the order to sort by."""
    return {value: i for i, value in enumerate(values)}


def range_text(rows: pd.DataFrame, column: str) -> str:
    """`column`'s smallest to largest value over `rows`, in words: "1.20 to 3.40"."""
    return f"{rows[column].min():.2f} to {rows[column].max():.2f}"


# --- a configuration's numbers over its seeds ----------------------------------------------------

def tradeoff_score(pretrain_knn, new_domain_accuracy, w: float):
    """w * pretrain_knn + (1 - w) * new_domain_accuracy: one number per method for a given priority.

    w = 1 ranks by what is kept of the pre-training domain (stability), w = 0 by what is learnt of
    the new one (plasticity). The browser computes SCORE_EXPR; the tests hold the two together.
    """
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w <= 1:
        raise ValueError(f"the weight w must be a number in [0, 1], got {w!r}")
    return w * pretrain_knn + (1 - w) * new_domain_accuracy


def check_frame(frame: pd.DataFrame, columns=FRAME_COLUMNS) -> None:
    """Raise ValueError unless `frame` has `columns`, rows, a single preset and known families."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"the frame lacks column(s) {', '.join(missing)}; "
                         "build it with vitcf.book.frames.records_frame")
    if frame.empty:
        raise ValueError("the frame has no rows: there is nothing to plot")
    if "preset" in frame.columns and frame["preset"].nunique() > 1:
        raise ValueError(f"the frame mixes presets {sorted(frame['preset'].unique())}; their accuracies are on "
                         "different datasets and cannot share axes, so plot one preset at a time")
    unknown = sorted(set(frame["family"]) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown method family {unknown}; known: {', '.join(FAMILIES)}")


def check_reference(frame: pd.DataFrame, reference: pd.DataFrame | None) -> None:
    """The paper's points share axes only with the paper preset (ViT-B/16, CIFAR-100, ImageNet-1K)."""
    if reference is None:
        return
    check_frame(reference, ("label", "family", "new_domain_accuracy", "pretrain_knn"))
    if "preset" in frame.columns and set(frame["preset"]) != {"paper"}:
        raise ValueError(f"reference points are the paper's (CIFAR-100 / ImageNet-1K) results; the frame's preset "
                         f"is {sorted(frame['preset'].unique())}, whose datasets differ: use the paper preset")


# The reference levels a frame may carry per probe (`frames.with_levels`), kept through `label_summary`.
LEVELS = (("random_init", "random-init network"), ("raw_pixels", "raw pixels"))


def label_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per label (configuration): the mean over its seeds, with min and max, and n seeds.

    Every measured probe's accuracy (mean, min, max), baseline and drop (`probes_of`).

    Rows come in the paper's family order, then by trainable parameters, so every view lists
    methods the same way.
    """
    check_frame(frame)
    families = frame.groupby("label")["family"].nunique()
    if (families > 1).any():
        raise ValueError(f"label(s) {list(families[families > 1].index)} appear under several families")
    grouped = frame.groupby("label", sort=False)
    head = {}
    for probe in probes_of(frame)[1:]:
        head |= {probe.accuracy: (probe.accuracy, "mean"), f"{probe.accuracy}_min": (probe.accuracy, "min"),
                 f"{probe.accuracy}_max": (probe.accuracy, "max"), probe.baseline: (probe.baseline, "mean"),
                 probe.drop: (probe.drop, "mean")}
    summary = grouped.agg(
        family=("family", "first"),
        trainable_params=("trainable_params", "max"),
        n=("label", "size"),
        new_domain_accuracy=("new_domain_accuracy", "mean"),
        new_domain_accuracy_min=("new_domain_accuracy", "min"),
        new_domain_accuracy_max=("new_domain_accuracy", "max"),
        pretrain_knn=("pretrain_knn", "mean"),
        pretrain_knn_min=("pretrain_knn", "min"),
        pretrain_knn_max=("pretrain_knn", "max"),
        pretrain_knn_baseline=("pretrain_knn_baseline", "mean"),
        drop=("drop", "mean"),
        **head,
        **{c: (c, "first") for c in frame.columns if c.endswith(tuple(f"_{level}" for level, _ in LEVELS))},
    ).reset_index()
    order = summary["family"].map(FAMILIES.index)
    return summary.assign(_order=order).sort_values(["_order", "trainable_params", "label"]).drop(
        columns="_order").reset_index(drop=True)


def rank_methods(frame: pd.DataFrame, w: float, family: str | None = None) -> pd.DataFrame:
    """The labels ranked by `tradeoff_score` at weight `w` (best first), optionally of one family.

    This is the ranking the chart's bar view shows at the same slider position.
    """
    summary = label_summary(frame)
    if family is not None:
        if family not in FAMILIES:
            raise ValueError(f"unknown method family {family!r}; known: {', '.join(FAMILIES)}")
        summary = summary[summary["family"] == family]
    summary = summary.assign(score=tradeoff_score(summary["pretrain_knn"], summary["new_domain_accuracy"], w))
    ranked = summary.sort_values(["score", "label"], ascending=[False, True]).reset_index(drop=True)
    return ranked.assign(rank=range(1, len(ranked) + 1))


WEIGHTS = tuple(i / 20 for i in range(21))  # the chart's slider positions: 0, 0.05, ..., 1


def first_place_weights(frame: pd.DataFrame, label: str) -> list[float]:
    """The slider positions w at which `label` ranks first by the trade-off score."""
    return [w for w in WEIGHTS if rank_methods(frame, w).iloc[0]["label"] == label]


def axis_summary(frame: pd.DataFrame, by: str) -> pd.DataFrame:
    """Mean and standard deviation over seeds per (label, `by`), `by` being "lr" or "steps"."""
    columns = ["new_domain_accuracy", *(c for p in probes_of(frame, with_baseline=False) for c in (p.accuracy, p.drop))]
    grouped = frame.groupby(["label", "family", by], sort=False)
    summary = grouped[columns].mean().join(grouped[columns].std().add_suffix("_sd")).join(
        grouped.size().rename("seeds")).join(grouped["paper_rate"].first()).reset_index()
    order = summary["label"].map(index_of(AXIS_LABELS))
    return summary.assign(_o=order).sort_values(["_o", by]).drop(columns="_o").reset_index(drop=True)


# --- forgetting over training steps ---------------------------------------------------------------

EARLY_STEP = 10  # the abstract's claim: full fine-tuning loses most of the pre-training domain within 10 steps


# The forgetting curves' columns (`vitcf.book.curve_frames.forgetting_curve_frame`) per probe, k-NN first.
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

    `curves` is `vitcf.book.curve_frames.forgetting_curve_frame`'s. Only runs probed at step 0 (or filled in
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


# --- reference levels and the learned margin ----------------------------------------------------------

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
