"""How far the probes can fall (reference levels, positive control, share of the learned margin), the two
new domains side by side, and the abstract's ten-step claim read from the full probe."""

import math

import pandas as pd
import pytest

from vitcf.book import charts, curve_frames, frames, notes, setup_notes, stats, tables
from vitcf.book.frames import records_frame

BASE = {"knn": {"20": 80.0}, "linear_head": 78.0, "instance": {"20": 30.0},
        "levels": {"random_init": {"knn": {"20": 60.0}, "linear_head": 50.0, "instance": {"20": 3.0}},
                   "raw_pixels": {"knn": {"20": 83.0}, "linear_head": 81.0, "instance": {"20": 12.0}}}}


def record(label, family, knn, head, instance, *, seed=0, new=50.0, steps=100, full_probe=None, history=None):
    return {
        "run": f"{label}_seed{seed}", "preset": "mini-glyphs", "method": label.split()[0].lower(), "family": family,
        "label": label, "hparams": {}, "seed": seed, "trainable_params": 1000,
        "config": {"selection": "held-out", "train": {"steps": steps}},
        "timings": {"train_seconds": 1.0, "images_per_second": 100.0},
        "history": history or [],
        "metrics": {
            "new_domain_accuracy": new, "knn": {"20": knn}, "knn_baseline": {"20": 80.0},
            "linear_head": {"after": head, "baseline": 78.0},
            **({} if instance is None else {"instance": {"after": {"20": instance}, "baseline": {"20": 30.0}}}),
            "full_probe_over_steps": full_probe or [],
        },
    }


RUNS = [record("Full", "standard", 76.0, 50.0, 16.5), record("Full", "standard", 78.0, 52.0, 19.5, seed=1),
        record("LoRA r=8", "LoRA", 80.0, 70.0, 29.0), record("Block exp. p=2", "block expansion", 79.0, 60.0, 30.0)]
CONTROL = [record("Re-init 12 blocks", "control", 61.0, 14.0, 2.0, new=5.0)]


def test_the_probe_range_table_reads_every_level_and_the_control():
    table = tables.probe_range_table(BASE, records_frame(CONTROL))
    assert list(table.index) == ["k-NN, k=20", "linear head", "instance retrieval, k=20"]
    assert table.loc["instance retrieval, k=20"].tolist() == [12.0, 3.0, 30.0, 27.0, 2.0]
    assert table.loc["k-NN, k=20", "learned margin (points)"] == 20.0
    assert tables.probe_range_table({"knn": {"20": 80.0}}).columns.tolist()[:2] == ["raw pixels (%)", "random init (%)"]
    assert math.isnan(tables.probe_range_table({"knn": {"20": 80.0}}).iloc[0, 0])  # an older baseline: no levels


def test_shares_of_the_learned_margin_and_the_headline():
    margins = stats.margin_table(records_frame(RUNS), BASE)
    assert margins.loc["Full", "k-NN: share of margin lost"] == pytest.approx(3.0 / 20)
    assert margins.loc["Full", "instance retrieval: share of margin lost"] == pytest.approx(12.0 / 27)
    assert margins.loc["LoRA r=8", "linear head: share of margin lost"] == pytest.approx(8.0 / 28)
    text = notes.margin_headline(records_frame(RUNS), BASE)
    assert "**Full** loses 15% by the k-NN probe (3.00 points)" in text and "44% by the instance-retrieval" in text
    assert "Block exp. p=2" in text and "1 or more seeds" in text
    assert "no reference levels" in notes.margin_headline(records_frame(RUNS), {"knn": {"20": 80.0}})


def test_the_control_note_says_how_far_each_probe_fell():
    note = notes.control_note(BASE, records_frame(CONTROL))
    assert "the k-NN probe to 61.00%" in note and "95% of the learned margin" in note
    assert "below the random-init level" in note  # the frozen head fell under a head fitted on random features
    with pytest.raises(ValueError, match="no positive-control records"):  # the page's guard speaks for it
        notes.control_note(BASE, records_frame([]))


def test_records_without_the_instance_probe_have_nan_columns_and_lose_its_panel():
    old = records_frame([record("Full", "standard", 76.0, 50.0, None)])
    assert old["instance_after"].isna().all()
    assert stats.probes_of(old) == (stats.KNN, stats.HEAD)
    assert stats.probes_of(records_frame(RUNS)) == stats.PROBES


def test_the_tradeoff_chart_draws_a_panel_per_probe_with_its_reference_levels():
    spec = charts.tradeoff_chart(frames.with_levels(records_frame(RUNS), BASE)).to_dict()
    panels = spec["vconcat"][0]["hconcat"]
    assert len(panels) == 3 and all(p["width"] == charts.PANEL_WIDTH[3] for p in panels)
    texts = [layer.get("encoding", {}).get("text", {}).get("value") for p in panels for layer in p["layer"]]
    assert texts.count("random-init network") == 3 and texts.count("raw pixels") == 3


def test_the_near_and_far_domains_side_by_side():
    near = records_frame([record("Full", "standard", 77.0, 40.0, None, new=95.0),
                          record("Linear", "standard", 80.0, 78.0, None, new=80.0)])
    table = tables.domains_table(records_frame(RUNS), near)
    assert list(table.index) == ["Full"]  # only configurations both domains hold
    assert table.loc["Full", "k-NN drop, digits (near)"] == 3.0 and table.loc["Full", "k-NN drop, glyphs (far)"] == 3.0
    assert table.loc["Full", "new domain (%), digits (near)"] == 95.0
    assert "instance retrieval drop, glyphs (far)" in table.columns
    assert "instance retrieval drop, digits (near)" not in table.columns  # never measured there
    spec = charts.domains_chart(records_frame(RUNS), near).to_dict()
    assert spec["params"][0]["bind"]["options"] == ["k-NN", "linear head", "instance retrieval"]


def test_the_learning_note_reads_the_held_out_curve_at_mid_schedule():
    rising = [{"step": s, "selection_accuracy": a} for s, a in ((40, 10.0), (50, 20.0), (100, 30.0))]
    flat = [{"step": s, "selection_accuracy": a} for s, a in ((40, 30.0), (50, 30.0), (100, 30.0))]
    assert "still rising at mid-schedule" in setup_notes.still_learning_note([record("Full", "standard", 1, 1, 1, history=rising)])
    assert "saturates" in setup_notes.still_learning_note([record("Full", "standard", 1, 1, 1, history=flat)])
    assert "No Full record" in setup_notes.still_learning_note([])


def test_the_ten_step_note_reads_the_full_probe():
    probes = [{"step": s, "knn": {"20": 80.0 - s / 10}, "linear_head": 78.0 - s, "instance": {"20": 30.0 - s / 5}}
              for s in (1, 2, 5, 10)]
    runs = [record("Full", "standard", 76.0, 50.0, 16.5, full_probe=probes),
            record("Full", "standard", 78.0, 52.0, 19.5, seed=1, full_probe=probes)]
    frame = curve_frames.ten_step_frame(runs)
    assert set(frame["step"]) == {0, 1, 2, 5, 10, 100} and frame["seed"].nunique() == 2
    note = notes.ten_step_note(runs)
    assert "80.00% before training, 79.00% after step 10" in note
    assert "far less than the abstract's 70%" in note and "instance retrieval" in note
    assert "curve probe above only" in notes.ten_step_note(RUNS)


def test_a_domains_frame_is_empty_without_shared_configurations():
    near = records_frame([record("Linear", "standard", 80.0, 78.0, None)])
    assert frames.domains_frame(records_frame(RUNS), near).empty
    assert isinstance(frames.domains_frame(records_frame(RUNS), near), pd.DataFrame)


def test_control_rows_are_labelled_as_controls_with_their_rate():
    runs = [dict(CONTROL[0], config={**CONTROL[0]["config"], "train": {"steps": 100, "lr": 0.005}}),
            dict(record("Full", "standard", 70.0, 20.0, 5.0), config={"selection": "x", "train": {"lr": 0.15}})]
    frame = frames.control_frame(runs)
    assert list(frame["label"]) == ["Control: Re-init 12 blocks, lr 0.005", "Control: Full, lr 0.15"]
    assert set(frame["family"]) == {"control"}
    both = stats.label_summary(pd.concat([records_frame(RUNS), frame]))
    assert set(list(both["label"])[-2:]) == set(frame["label"]) and (both["label"] == "Full").sum() == 1
