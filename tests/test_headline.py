"""The book's first screen: what each configuration learnt and forgot, with intervals, from the records."""

import numpy as np
import pytest

from vitcf.book import charts, frames, notes, pages, tables
from vitcf.base.uncertainty import pack

QUERIES = 2000


def hits(accuracy: float, seed: int) -> dict:
    out = np.zeros(QUERIES, dtype=bool)
    out[np.random.default_rng(seed).permutation(QUERIES)[:round(accuracy * QUERIES / 100)]] = True
    return pack(out)


def record(label, family, seed, new, knn, instance, params=1):
    return {"label": label, "family": family, "seed": seed, "trainable_params": params,
            "metrics": {"correct": {"knn": {"20": hits(knn, seed)}, "instance": {"20": hits(instance, 10 + seed)},
                                    "new_domain": hits(new, 20 + seed)}}}


BASELINE = {"correct": {"knn": {"20": hits(80.0, 99)}, "instance": {"20": hits(30.0, 98)}}}
RUNS = [record("Full", "standard", s, 90, 60, 10, params=100) for s in (0, 1)] + \
       [record("LoRA r=8", "LoRA", s, 70, 80, 30, params=10) for s in (0, 1)]


def test_the_frame_has_what_was_learnt_and_each_probe_s_drop_with_intervals():
    frame = frames.headline_frame(RUNS, BASELINE).set_index(["label", "measure"])
    full_learnt = frame.loc[("Full", frames.LEARNT)]
    assert full_learnt["value"] == pytest.approx(90) and full_learnt["low"] < 90 < full_learnt["high"]
    assert full_learnt["seeds"] == 2 and full_learnt["family"] == "standard"
    knn = frame.loc[("Full", "forgot: k-NN drop (points)")]
    assert knn["value"] == pytest.approx(20) and 15 < knn["low"] < 20 < knn["high"] < 25
    instance = frame.loc[("Full", "forgot: instance retrieval drop (points)")]
    assert instance["value"] == pytest.approx(20)
    assert frame.loc[("LoRA r=8", "forgot: k-NN drop (points)"), "low"] < 0  # the same accuracy: no clear drop
    assert frame.loc[("Full", frames.LEARNT), "interval"].startswith("90.00 [")
    assert list(dict.fromkeys(frame.index.get_level_values("label"))) == ["Full", "LoRA r=8"]  # family order
    assert frames.headline_frame([{**r, "metrics": {}} for r in RUNS], BASELINE).empty  # no correctness, no rows


def test_the_chart_has_one_panel_per_measure_and_a_zero_rule_on_the_drops():
    spec = charts.headline_chart(frames.headline_frame(RUNS, BASELINE)).to_dict()
    panels = spec["hconcat"]
    assert [p["layer"][-1]["encoding"]["x"]["title"] for p in panels] == [
        frames.LEARNT, "forgot: k-NN drop (points)", "forgot: instance retrieval drop (points)"]
    assert len(panels[0]["layer"]) == 2 and all(len(p["layer"]) == 3 for p in panels[1:])  # the rule at zero
    assert panels[0]["layer"][1]["encoding"]["y"]["axis"]["labels"] is True
    assert panels[1]["layer"][2]["encoding"]["y"]["axis"]["labels"] is False  # names once, on the left
    assert spec["hconcat"][0]["width"] * 3 < 688
    with pytest.raises(ValueError, match="no per-query correctness"):
        charts.headline_chart(frames.headline_frame([], BASELINE))


def test_the_note_names_the_largest_drop_the_unclear_ones_and_the_control_s_scale():
    control = frames.headline_frame([record("Re-init", "control", s, 50, 20, 3) for s in (0, 1)], BASELINE)
    note = notes.headline_note(frames.headline_frame(RUNS, BASELINE), control)
    lines = note.splitlines()
    assert lines[0].startswith("- By k-NN, Full loses the most, 20.00 [")
    assert "1 of the 2 configurations lose nothing the probe can tell from none (LoRA r=8)" in lines[0]
    assert "for scale, the positive control Re-init loses 60.00 [" in lines[0]
    assert lines[1].startswith("- By instance retrieval, Full loses the most, 20.00 [")


def test_the_claims_view_sets_the_paper_beside_ours_with_nothing_cut():
    study = pages.load_study("mini-glyphs")
    if study.empty:
        pytest.skip("no committed mini-glyphs records")
    view = tables.claims_view(frames.paper_chart_frame(), study.frame(), study.runs)
    table = view.data
    assert list(table.columns[:4]) == ["claim", "paper", "ours (k-NN)", "our evidence (k-NN), points with 95% interval"]
    assert len(table) == 5 and set(table["paper"]) == {"holds"}
    assert set(table["ours (k-NN)"]) <= {"holds", "does not hold", "inconclusive"}
    html = view.to_html()
    assert "..." not in html and "white-space: normal" in html
    for evidence in table["our evidence (k-NN), points with 95% interval"]:
        assert evidence in html  # in full
