"""How sure each comparison of the study is: the records' per-query correctness as intervals and verdicts.

Every run record carries which queries each probe got right (`metrics.correct`) and which test images
of the new domain the model got right; the folder's baseline carries the pre-trained backbone's. All
configurations are probed on the same queries, so a drop and a difference between two configurations
are paired comparisons, resampled by `vitcf.base.uncertainty` (queries, then seeds: a two-stage bootstrap).
Records made before per-query correctness was recorded have none: a comparison that needs them is
left out and says so, never guessed.

The resolution axis is read the same way: a preset's resolution grid (`vitcf.engine.presets.resolution_grid`)
runs the five method families of the other axes at their paper rates with the new domain downsampled before
the input pipeline resizes it back (`vitcf.engine.batching.at_source_size`); the core grid's runs of the same
families are the native resolution.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from vitcf.base.uncertainty import FAILS, HOLDS, INCONCLUSIVE, Interval, Paired, drop_interval, holm, unpack
from vitcf.book.stats import AXIS_LABELS, FAMILIES, HEAD, INSTANCE, KNN, index_of
from vitcf.engine.sources import SIDES
from vitcf.engine.presets import Preset


BEFORE = "\0pre-trained"  # the baseline's name among the configurations of a `Paired` (no label can be it)

REFIT = "re-fitted head"
NEW_DOMAIN = "new domain"
KEYS = {KNN.name: "knn", HEAD.name: "linear_head", INSTANCE.name: "instance", REFIT: "linear_head_refit",
        NEW_DOMAIN: "new_domain"}  # the records' `metrics.correct` keys
BASELINE_KEYS = KEYS | {REFIT: "linear_head"}  # the pre-trained backbone's re-fitted head is the frozen head
PER_K = ("knn", "instance")
SIGNIFICANCE = 0.05  # a pairwise difference is marked when its Holm-adjusted p-value is below this


def _unpacked(entry, key: str, k: int) -> np.ndarray | None:
    if entry is None:
        return None
    if key in PER_K:
        entry = entry.get(str(k))
    return None if entry is None else unpack(entry)


def run_correct(record: dict, what: str, k: int = 20) -> np.ndarray | None:
    """Which queries (or new-domain test images) a run got right, for `what` (a `KEYS` name); None if unrecorded."""
    key = KEYS[what]
    return _unpacked((record["metrics"].get("correct") or {}).get(key), key, k)


def baseline_correct(baseline: dict | None, what: str, k: int = 20) -> np.ndarray | None:
    """Which queries the pre-trained backbone got right, for probe `what`; None if unrecorded."""
    key = BASELINE_KEYS[what]
    return _unpacked(((baseline or {}).get("correct") or {}).get(key), key, k)


def correctness(runs: list[dict], what: str, k: int = 20) -> dict[str, np.ndarray]:
    """Per configuration label: a seeds x queries boolean matrix of the runs that recorded `what`."""
    per_label: dict[str, list[np.ndarray]] = {}
    for record in sorted(runs, key=lambda r: r["seed"]):
        hits = run_correct(record, what, k)
        if hits is not None:
            per_label.setdefault(record["label"], []).append(hits)
    return {label: np.stack(rows) for label, rows in per_label.items()}


def ordered(runs: list[dict], labels) -> list[str]:
    """`labels` in the book's order: by family (`stats.FAMILIES`), then trainable parameters, then name."""
    keys = {r["label"]: (FAMILIES.index(r["family"]) if r["family"] in FAMILIES else len(FAMILIES),
                         r["trainable_params"], r["label"]) for r in runs}
    return sorted((label for label in keys if label in labels), key=keys.get)


# --- drops -------------------------------------------------------------------------------------

def drop_table(runs: list[dict], baseline: dict | None, k: int = 20,
               probes=(KNN.name, HEAD.name, REFIT, INSTANCE.name)) -> pd.DataFrame:
    """One row per (configuration, probe): the drop from the pre-trained backbone (points) and its interval."""
    rows = []
    for what in probes:
        before = baseline_correct(baseline, what, k)
        if before is None:
            continue
        matrices = correctness(runs, what, k)
        if not matrices:
            continue
        paired = Paired({**matrices, BEFORE: before})
        for label in ordered(runs, matrices):
            found = paired.difference(label, BEFORE)
            rows.append({"label": label, "probe": what, "drop": found.estimate, "low": found.low,
                         "high": found.high, "seeds": matrices[label].shape[0]})
    return pd.DataFrame(rows, columns=["label", "probe", "drop", "low", "high", "seeds"])


def gap(runs: list[dict], what: str, first: str, second: str, k: int = 20) -> Interval | None:
    """Accuracy of configuration `first` minus that of `second` on `what` (points), with its paired
    interval; None when either has no per-query correctness in `runs`."""
    matrices = correctness([r for r in runs if r["label"] in (first, second)], what, k)
    if first not in matrices or second not in matrices:
        return None
    return Paired(matrices).difference(second, first)


# --- the paper's claims with intervals ---------------------------------------------------------------

CLAIM_FULL_MOST = "Full fine-tuning forgets the pre-training domain the most"
CLAIM_BLOCKS_KEEP = "Every block expansion forgets less than every LoRA"
CLAIM_LORA_MATCHES = "LoRA reaches Full fine-tuning's new-domain accuracy or better"
CLAIM_BLOCKS_MATCH = "Block expansion reaches Full fine-tuning's new-domain accuracy or better"
CLAIM_LINEAR_LEAST = "Linear fine-tuning learns the new domain least"


def _all_of(comparisons: dict[tuple[str, str], Interval]) -> tuple[str, tuple[str, str], Interval]:
    """Every comparison must be above 0: holds when all are, does not hold when one is below; the binding
    (smallest) comparison is the effect reported."""
    name, binding = min(comparisons.items(), key=lambda item: item[1].estimate)
    verdicts = [c.verdict() for c in comparisons.values()]
    outcome = HOLDS if all(v == HOLDS for v in verdicts) else FAILS if FAILS in verdicts else INCONCLUSIVE
    return outcome, name, binding


def _any_of(comparisons: dict[tuple[str, str], Interval]) -> tuple[str, tuple[str, str], Interval]:
    """One comparison above 0 suffices: holds when one is, does not hold when all are below; the best
    comparison is the effect reported."""
    name, best = max(comparisons.items(), key=lambda item: item[1].estimate)
    verdicts = [c.verdict() for c in comparisons.values()]
    outcome = HOLDS if HOLDS in verdicts else FAILS if all(v == FAILS for v in verdicts) else INCONCLUSIVE
    return outcome, name, best


def _families(runs: list[dict]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for record in runs:
        out.setdefault(record["family"], [])
        if record["label"] not in out[record["family"]]:
            out[record["family"]].append(record["label"])
    return out


def claim_intervals(runs: list[dict], probe: str = KNN.name, k: int = 20) -> list[dict]:
    """The paper's headline claims tested on `runs` with intervals, the forgetting claims by `probe`:
    [{"claim", "verdict" (holds / does not hold / inconclusive, or None when the records lack what it
    needs), "effect" (points), "low", "high", "evidence"}], in the order of the CLAIM_* texts above."""
    if probe not in KEYS or probe == NEW_DOMAIN:
        raise ValueError(f"unknown probe {probe!r}; allowed: {', '.join(k for k in KEYS if k != NEW_DOMAIN)}")
    forgetting, learning = correctness(runs, probe, k), correctness(runs, NEW_DOMAIN, k)
    labels = list(dict.fromkeys(r["label"] for r in runs))
    families = _families(runs)
    lora, blocks = families.get("LoRA", []), families.get("block expansion", [])
    others = [label for label in labels if label != "Full"]
    learners = [label for label in labels if label != "Linear"]
    word = {KNN.name: "k-NN", HEAD.name: "linear-head", REFIT: "re-fitted-head", INSTANCE.name: "instance-retrieval"}[probe]

    shared: dict[str, Paired] = {}  # one bootstrap per domain, made when first needed, shared by its comparisons

    def paired(name: str, data: dict) -> Paired:
        if name not in shared:
            shared[name] = Paired(data)
        return shared[name]

    def drops(a: str, b: str) -> Interval:  # drop(a) - drop(b), on the probe
        return paired("forgetting", forgetting).difference(a, b)

    def accuracies(a: str, b: str) -> Interval:  # accuracy(a) - accuracy(b), on the new domain
        return paired("learning", learning).difference(b, a)

    def test(claim, data, needed, pairs, combine, describe) -> dict:
        """`pairs`: (a, b, comparison) tuples, each an interval that must lie above 0 for the claim."""
        if not pairs or any(label not in labels for label in needed):
            return {"claim": claim, "verdict": None, "effect": None, "low": None, "high": None,
                    "evidence": "rows missing from these records"}
        if any(a not in data or b not in data for a, b, _ in pairs):
            return {"claim": claim, "verdict": None, "effect": None, "low": None, "high": None,
                    "evidence": "no per-query correctness in these records for every configuration it compares"}
        comparisons = {(a, b): compare(a, b) for a, b, compare in pairs}
        outcome, (a, b), effect = combine(comparisons)
        return {"claim": claim, "verdict": outcome, "effect": effect.estimate, "low": effect.low, "high": effect.high,
                "evidence": describe(a, b, effect, len(comparisons))}

    return [
        test(CLAIM_FULL_MOST, forgetting, ["Full"], [("Full", o, drops) for o in others], _all_of,
             lambda a, b, e, n: f"{word} drop of Full minus that of the closest other, {b}: {e} points "
                                f"(of {n} comparisons)"),
        test(CLAIM_BLOCKS_KEEP, forgetting, [], [(a, b, drops) for a in lora for b in blocks], _all_of,
             lambda a, b, e, n: f"{word} drop of {a} minus that of {b}, the closest pair: {e} points (of {n} pairs)"),
        test(CLAIM_LORA_MATCHES, learning, ["Full"], [(a, "Full", accuracies) for a in lora], _any_of,
             lambda a, b, e, n: f"new-domain accuracy of the best LoRA, {a}, minus Full's: {e} points"),
        test(CLAIM_BLOCKS_MATCH, learning, ["Full"], [(a, "Full", accuracies) for a in blocks], _any_of,
             lambda a, b, e, n: f"new-domain accuracy of the best block expansion, {a}, minus Full's: {e} points"),
        test(CLAIM_LINEAR_LEAST, learning, ["Linear"], [(o, "Linear", accuracies) for o in learners], _all_of,
             lambda a, b, e, n: f"new-domain accuracy of the closest other, {a}, minus Linear's: {e} points "
                                f"(of {n} comparisons)"),
    ]


# --- every pair of configurations, corrected for multiple comparisons -----------------------------------

def pairwise(runs: list[dict], what: str, k: int = 20) -> pd.DataFrame:
    """Every pair of configurations on `what` (a probe: the difference of their drops; `NEW_DOMAIN`: of their
    accuracies), row minus column, with its interval and Holm-adjusted p-value over all the pairs."""
    data = correctness(runs, what, k)
    labels = ordered(runs, data)
    paired = Paired(data) if len(labels) >= 2 else None
    rows = []
    for a, b in itertools.combinations(labels, 2):
        # a probe: drop(a) - drop(b); the new domain: accuracy(a) - accuracy(b)
        found = paired.difference(a, b) if what != NEW_DOMAIN else paired.difference(b, a)
        rows.append({"a": a, "b": b, "difference": found.estimate, "low": found.low, "high": found.high,
                     "p": found.p_value})
    frame = pd.DataFrame(rows, columns=["a", "b", "difference", "low", "high", "p"])
    frame["p_holm"] = holm(frame["p"].tolist()) if len(frame) else []
    frame["differs"] = frame["p_holm"] < SIGNIFICANCE
    return frame


PAIRWISE_METRICS = {NEW_DOMAIN: "new-domain accuracy: row minus column (points)",
                    KNN.name: "k-NN drop: row minus column (points)",
                    INSTANCE.name: "instance-retrieval drop: row minus column (points)",
                    HEAD.name: "linear-head drop: row minus column (points)"}


def pairwise_frame(runs: list[dict], k: int = 20) -> pd.DataFrame:
    """Both orientations of every pair, for every metric the records carry correctness for (the heatmap's data)."""
    parts = []
    for what, title in PAIRWISE_METRICS.items():
        pairs = pairwise(runs, what, k)
        if pairs.empty:
            continue
        flipped = pairs.rename(columns={"a": "b", "b": "a"}).assign(difference=-pairs["difference"],
                                                                     low=-pairs["high"], high=-pairs["low"])
        parts.append(pd.concat([pairs, flipped]).assign(metric=title))
    if not parts:
        return pd.DataFrame(columns=["a", "b", "difference", "low", "high", "p", "p_holm", "differs", "metric"])
    frame = pd.concat(parts, ignore_index=True)
    frame["text"] = [f"{d:+.1f}" if differs else "" for d, differs in zip(frame["difference"], frame["differs"])]
    return frame


# --- the abstract's ten-iteration claim ----------------------------------------------------------------

ABSTRACT_SHARE = 0.7  # the abstract: full fine-tuning "loses over 70% accuracy after only 10 iterations"


def early_drops(runs: list[dict], baseline: dict | None, k: int = 20, label: str = "Full",
                probes=(KNN.name, HEAD.name, INSTANCE.name)) -> pd.DataFrame:
    """`label`'s drop at each step of the full probe (`metrics.full_probe_over_steps`) and at the run's end,
    per probe, with intervals (`before`: the pre-trained accuracy) and the verdict of "over 70% of `before`
    lost" (`ABSTRACT_SHARE`) at that step."""
    rows = []
    chosen = [r for r in runs if r["label"] == label and r["metrics"].get("full_probe_over_steps")]
    for what in probes:
        before = baseline_correct(baseline, what, k)
        if before is None or not chosen:
            continue
        key = KEYS[what]
        steps = sorted({e["step"] for r in chosen for e in r["metrics"]["full_probe_over_steps"]} - {0})
        per_step = {}
        for step in steps:
            hits = [_unpacked((e.get("correct") or {}).get(key), key, k)
                    for r in chosen for e in r["metrics"]["full_probe_over_steps"] if e["step"] == step]
            if hits and all(h is not None for h in hits):
                per_step[step] = np.stack(hits)
        ends = [run_correct(r, what, k) for r in chosen]
        if all(h is not None for h in ends):
            per_step[max(r["config"]["train"]["steps"] for r in chosen)] = np.stack(ends)
        start = 100.0 * before.mean()
        for step, hits in per_step.items():
            found = drop_interval(before, hits)
            rows.append({"probe": what, "step": step, "before": start, "drop": found.estimate, "low": found.low,
                         "high": found.high, "seeds": hits.shape[0],
                         "verdict": found.verdict(ABSTRACT_SHARE * start)})
    return pd.DataFrame(rows, columns=["probe", "step", "before", "drop", "low", "high", "seeds", "verdict"])


# --- the new domain's source resolution as an axis --------------------------------------------------

RESOLUTION_PROBES = (KNN.name, INSTANCE.name, HEAD.name, REFIT)  # the paper's probe first


RESOLUTION_COLUMNS = ["label", "probe", "source_size", "drop", "low", "high", "seeds"]
EFFECT_COLUMNS = ["label", "probe", "source_size", "native", "effect", "low", "high", "verdict"]


def source_size(record: dict, preset: Preset) -> int:
    """The side (pixels) a run saw the new domain at: its recorded source size, else the dataset's own."""
    return record["config"]["preset"].get("source_size") or SIDES[preset.new_domain]


def resolution_runs(grid_runs: list[dict], core_runs: list[dict]) -> list[dict]:
    """The records of the axis: the resolution grid's runs and the core grid's runs of the same families."""
    return [*grid_runs, *(r for r in core_runs if r["label"] in {x["label"] for x in grid_runs})]


def _size_matrices(runs: list[dict], preset: Preset, what: str, k: int) -> dict[tuple[str, int], np.ndarray]:
    """(label, source size) -> seeds x items correctness of `what`, for the runs that recorded it."""
    rows: dict[tuple[str, int], list[np.ndarray]] = {}
    for record in sorted(runs, key=lambda r: r["seed"]):
        hits = run_correct(record, what, k)
        if hits is not None:
            rows.setdefault((record["label"], source_size(record, preset)), []).append(hits)
    return {key: np.stack(value) for key, value in rows.items()}


def resolution_order(keys) -> list[tuple[str, int]]:
    """(label, source size) keys in the axes' family order, then by size."""
    rank = index_of(AXIS_LABELS)
    return sorted(keys, key=lambda key: (rank.get(key[0], len(rank)), key[0], key[1]))


def resolution_drops(runs: list[dict], baseline: dict | None, preset: Preset, k: int = 20) -> pd.DataFrame:
    """One row per (family, probe, source size): the drop from the pre-trained backbone (points) with its 95%
    paired bootstrap interval (queries and seeds resampled), and one "new domain" row per (family, size)
    whose `drop` column holds the new-domain test accuracy (%) instead, with its interval."""
    rows = []
    for what in RESOLUTION_PROBES:
        before = baseline_correct(baseline, what, k)
        matrices = _size_matrices(runs, preset, what, k)
        if before is None or not matrices:
            continue
        paired = Paired({**matrices, BEFORE: before})
        for key in resolution_order(matrices):
            found = paired.difference(key, BEFORE)
            rows.append([key[0], what, key[1], found.estimate, found.low, found.high, matrices[key].shape[0]])
    learnt = _size_matrices(runs, preset, NEW_DOMAIN, k)
    if learnt:
        paired = Paired(learnt)
        for key in resolution_order(learnt):
            found = paired.accuracy(key)
            rows.append([key[0], NEW_DOMAIN, key[1], found.estimate, found.low, found.high, learnt[key].shape[0]])
    return pd.DataFrame(rows, columns=RESOLUTION_COLUMNS)


def resolution_effects(runs: list[dict], preset: Preset, k: int = 20) -> pd.DataFrame:
    """Per (family, probe, lower source size): how much more the family forgets there than at the native
    resolution (points; the native accuracy minus the lower one's, on the same queries), with its 95% paired
    interval and the verdict of "a lower resolution forgets more": holds, does not hold, inconclusive, or
    "unchanged" where the runs got exactly the same queries right (a frozen backbone)."""
    native = SIDES[preset.new_domain]
    rows = []
    for what in RESOLUTION_PROBES:
        matrices = _size_matrices(runs, preset, what, k)
        if not matrices:
            continue
        paired = Paired(matrices)
        for label, size in resolution_order(matrices):
            if size == native or (label, native) not in matrices:
                continue
            found = paired.difference((label, size), (label, native))
            same = matrices[(label, size)].shape == matrices[(label, native)].shape and bool(
                (matrices[(label, size)] == matrices[(label, native)]).all())
            rows.append([label, what, size, native, found.estimate, found.low, found.high,
                         "unchanged" if same else found.verdict()])
    return pd.DataFrame(rows, columns=EFFECT_COLUMNS)
