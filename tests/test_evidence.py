"""Intervals and verdicts from per-query correctness, on synthetic records whose answers are known."""

import numpy as np
import pandas as pd
import pytest

from vitcf.book import charts, evidence, frames, notes, stats, tables, verdicts
from vitcf.base.uncertainty import FAILS, HOLDS, INCONCLUSIVE, pack

QUERIES = 2000
FAMILY = {"Full": "standard", "Linear": "standard", "LoRA r=8": "LoRA", "LoRA r=4": "LoRA",
          "Block exp. p=2": "block expansion"}
PARAMS = {"Linear": 1, "LoRA r=4": 2, "LoRA r=8": 3, "Block exp. p=2": 4, "Full": 5}


def hits(accuracy: float, seed: int) -> np.ndarray:
    """`accuracy`% of the queries right, a different random set per seed."""
    out = np.zeros(QUERIES, dtype=bool)
    out[np.random.default_rng(seed).permutation(QUERIES)[:round(accuracy * QUERIES / 100)]] = True
    return out


def record(label, seed, knn, new, steps=()):
    """A record of `label` whose k-NN probe scores `knn`% and whose new-domain accuracy is `new`%."""
    over = [{"step": step, "correct": {"knn": {"20": pack(hits(value, 100 + seed))}}} for step, value in steps]
    return {"label": label, "family": FAMILY[label], "seed": seed, "trainable_params": PARAMS[label],
            "config": {"train": {"steps": 300}},
            "metrics": {"correct": {"knn": {"20": pack(hits(knn, seed))}, "new_domain": pack(hits(new, 50 + seed))},
                        "full_probe_over_steps": over}}


BASELINE = {"correct": {"knn": {"20": pack(hits(80.0, 999))}}}


def study(knn: dict, new: dict, seeds=(0, 1, 2)) -> list[dict]:
    return [record(label, seed, knn[label], new[label]) for label in knn for seed in seeds]


def by_claim(runs):
    return {c["claim"]: c for c in evidence.claim_intervals(runs)}


def test_clear_cases_hold_or_fail_and_a_tie_is_inconclusive():
    runs = study(knn={"Full": 40, "Linear": 80, "LoRA r=4": 70, "LoRA r=8": 72, "Block exp. p=2": 79},
                 new={"Full": 90, "Linear": 30, "LoRA r=4": 95, "LoRA r=8": 60, "Block exp. p=2": 70})
    claims = by_claim(runs)
    assert claims[evidence.CLAIM_FULL_MOST]["verdict"] == HOLDS
    assert claims[evidence.CLAIM_FULL_MOST]["effect"] == pytest.approx(30, abs=1.5)  # against LoRA r=4, the closest
    assert "closest other, LoRA r=4" in claims[evidence.CLAIM_FULL_MOST]["evidence"]
    assert claims[evidence.CLAIM_BLOCKS_KEEP]["verdict"] == HOLDS
    assert claims[evidence.CLAIM_LORA_MATCHES]["verdict"] == HOLDS  # LoRA r=4 beats Full by 5 points
    assert claims[evidence.CLAIM_BLOCKS_MATCH]["verdict"] == FAILS  # 20 points below
    assert claims[evidence.CLAIM_LINEAR_LEAST]["verdict"] == HOLDS
    low, high = claims[evidence.CLAIM_BLOCKS_MATCH]["low"], claims[evidence.CLAIM_BLOCKS_MATCH]["high"]
    assert low < -20 < high or low < claims[evidence.CLAIM_BLOCKS_MATCH]["effect"] < high
    tied = study(knn={"Full": 70, "Linear": 80, "LoRA r=4": 70, "LoRA r=8": 72, "Block exp. p=2": 79},
                 new={"Full": 90, "Linear": 30, "LoRA r=4": 90, "LoRA r=8": 60, "Block exp. p=2": 70})
    claims = by_claim(tied)
    assert claims[evidence.CLAIM_FULL_MOST]["verdict"] == INCONCLUSIVE  # Full and LoRA r=4 both drop 10 points
    assert claims[evidence.CLAIM_LORA_MATCHES]["verdict"] == INCONCLUSIVE
    worse = study(knn={"Full": 60, "Linear": 80, "LoRA r=4": 40, "LoRA r=8": 72, "Block exp. p=2": 79},
                  new={"Full": 90, "Linear": 30, "LoRA r=4": 90, "LoRA r=8": 60, "Block exp. p=2": 70})
    assert by_claim(worse)[evidence.CLAIM_FULL_MOST]["verdict"] == FAILS  # LoRA r=4 forgets far more


def test_the_interval_covers_the_known_sampling_spread():
    """A drop of 10 points on 2,000 queries, one seed: the bootstrap's 95% interval should be about
    +-1.96 * sqrt(2 * 0.8 * 0.2 / 2000) * 100 wide for independent sets (~2.5 points), and contain 10."""
    before = hits(80, 1)
    table = evidence.drop_table([record("Full", 0, 70, 50)], {"correct": {"knn": {"20": pack(before)}}},
                                probes=(stats.KNN.name,))
    row = table.iloc[0]
    assert row["drop"] == pytest.approx(10.0) and row["low"] < 10 < row["high"]
    assert 3.0 < row["high"] - row["low"] < 7.0
    cells = tables.drop_cells(table)
    assert cells.loc["Full", "k-NN drop (points)"].startswith("10.00 [")


def test_records_without_correctness_give_no_verdict_and_say_why():
    runs = study(knn={"Full": 40, "Linear": 80, "LoRA r=4": 70, "LoRA r=8": 72, "Block exp. p=2": 79},
                 new={"Full": 90, "Linear": 30, "LoRA r=4": 95, "LoRA r=8": 60, "Block exp. p=2": 70})
    for r in runs:
        if r["label"] == "LoRA r=8":
            del r["metrics"]["correct"]
    claims = by_claim(runs)
    assert claims[evidence.CLAIM_FULL_MOST]["verdict"] is None
    assert "no per-query correctness" in claims[evidence.CLAIM_FULL_MOST]["evidence"]
    assert evidence.drop_table(runs, None).empty  # no baseline correctness: no drop intervals
    with pytest.raises(ValueError, match="unknown probe 'pixels'; allowed: k-NN"):
        evidence.claim_intervals(runs, "pixels")


def test_pairwise_holm_marks_only_real_differences():
    runs = study(knn={"Full": 40, "Linear": 80, "LoRA r=4": 80, "LoRA r=8": 80, "Block exp. p=2": 79.5},
                 new={"Full": 90, "Linear": 30, "LoRA r=4": 95, "LoRA r=8": 60, "Block exp. p=2": 70})
    pairs = evidence.pairwise(runs, stats.KNN.name).set_index(["a", "b"])
    assert len(pairs) == 10 and (pairs["p_holm"] >= pairs["p"]).all()
    # the book's order: standard first, by trainable parameters (Linear before Full); row minus column
    assert pairs.loc[("Linear", "Full"), "differs"] and pairs.loc[("Linear", "Full"), "difference"] == pytest.approx(-40, abs=2)
    assert not pairs.loc[("LoRA r=4", "LoRA r=8"), "differs"]  # the same accuracy, different queries
    frame = evidence.pairwise_frame(runs)
    assert set(frame["metric"]) == {evidence.PAIRWISE_METRICS[evidence.NEW_DOMAIN], evidence.PAIRWISE_METRICS["k-NN"]}
    assert len(frame) == 2 * 2 * 10  # both orientations of every pair, per metric
    spec = charts.pairwise_chart(frame, evidence.ordered(runs, {r["label"] for r in runs})).to_dict()
    assert spec["params"][0]["name"] == charts.METRIC_PARAM
    assert "holds after Holm's correction" in notes.pairwise_note(frame)


def test_the_ten_step_drop_is_judged_against_the_abstract_share():
    runs = [record("Full", seed, 70, 90, steps=[(1, 79), (10, 20)]) for seed in (0, 1)]
    frame = evidence.early_drops(runs, BASELINE, probes=(stats.KNN.name,)).set_index("step")
    assert list(frame.index) == [1, 10, 300]
    assert frame.loc[10, "verdict"] == HOLDS  # 60 of 80 points lost: 75%, above the abstract's 70% by far
    assert frame.loc[1, "verdict"] == FAILS and frame.loc[300, "drop"] == pytest.approx(10, abs=1.5)


def test_the_claims_table_is_three_way_where_records_carry_correctness():
    import pandas as pd

    knn = {"Full": 70, "Linear": 80, "LoRA r=4": 70, "LoRA r=8": 72, "Block exp. p=2": 79}
    new = {"Full": 90, "Linear": 30, "LoRA r=4": 90, "LoRA r=8": 60, "Block exp. p=2": 70}
    runs = study(knn, new)
    frame = pd.DataFrame([{"label": r["label"], "family": r["family"], "trainable_params": r["trainable_params"],
                           "seed": r["seed"], "new_domain_accuracy": new[r["label"]], "pretrain_knn": knn[r["label"]],
                           "pretrain_knn_baseline": 80.0, "drop": 80.0 - knn[r["label"]]} for r in runs])
    paper = frames.paper_chart_frame()
    points = verdicts.claims_table(paper, frame)  # by the point estimates: Full (10.00) ties LoRA r=4 -> holds
    assert points.loc[evidence.CLAIM_FULL_MOST, verdicts.OURS_KNN] == "holds"
    table = verdicts.claims_table(paper, frame, runs)
    assert table.loc[evidence.CLAIM_FULL_MOST, verdicts.OURS_KNN] == INCONCLUSIVE
    assert "[" in table.loc[evidence.CLAIM_FULL_MOST, "our numbers, k-NN"]  # the effect with its interval
    note = verdicts.agreement_note(paper, frame, runs)
    assert "inconclusive)" in note and "Our records cannot decide: *Full fine-tuning forgets" in note


def test_a_gap_between_two_configurations_has_a_paired_interval():
    runs = study(knn={"LoRA r=4": 70, "LoRA r=8": 60}, new={"LoRA r=4": 50, "LoRA r=8": 50})
    gap = evidence.gap(runs, stats.KNN.name, "LoRA r=4", "LoRA r=8")
    assert gap.estimate == pytest.approx(10.0) and 5 < gap.low < 10 < gap.high < 15
    same = evidence.gap(study(knn={"LoRA r=4": 70, "LoRA r=8": 70}, new={"LoRA r=4": 50, "LoRA r=8": 50}),
                        stats.KNN.name, "LoRA r=4", "LoRA r=8")
    assert same.low < 0 < same.high
    assert evidence.gap(runs, stats.HEAD.name, "LoRA r=4", "LoRA r=8") is None  # no head correctness recorded
    assert evidence.gap(runs, stats.KNN.name, "LoRA r=4", "Full") is None


def test_the_design_note_gives_each_axis_gap_its_interval():
    runs = [record("LoRA r=4", 0, 70, 50), record("LoRA r=8", 1, 69.5, 50)]  # unrelated sets of right queries
    frame = pd.DataFrame([{"axis": "LoRA: rank r", "value": 4, "series": "q, v (paper)", "label": "LoRA r=4",
                           "new_domain_accuracy": 50.0, "pretrain_knn": 70.0},
                          {"axis": "LoRA: rank r", "value": 8, "series": "q, v (paper)", "label": "LoRA r=8",
                           "new_domain_accuracy": 50.0, "pretrain_knn": 69.5}])
    note = notes.design_note(frame, runs)
    assert "by the k-NN probe (gap 0.50 [" in note and "points: no clear gap)" in note
    assert "(gap" not in notes.design_note(frame)  # no records, no interval
    nested = [record("LoRA r=4", 0, 70, 50), record("LoRA r=8", 0, 69.5, 50)]  # r=8 gets a subset of r=4's right
    assert "by the k-NN probe (gap 0.50 [0.20, 0.85] points);" in notes.design_note(frame, nested)
    headline = notes.design_headline(frame, nested)  # the knob that moved the probe most, with its interval
    assert "- **k-NN**: LoRA (q, v (paper)) moves it most, from 70.00% at r=4 to 69.50% at r=8 (0.50 [0.20, 0.85] points)." \
        in headline
    assert "no clear gap" in notes.design_headline(frame, runs)
