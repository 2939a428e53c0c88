"""The axes page's numbers: frames, verdicts and charts of the rate and schedule axes, on every probe."""

import json

import pytest

from vitcf.book import axis_charts, axis_notes, curve_frames, frames, setup_notes, stats, tables, verdicts
from vitcf.engine.presets import get_preset

FAMILIES = {"Full": ("full", "standard", {}), "Top-3": ("top_k", "standard", {"k": 3}),
            "Linear": ("linear", "standard", {}), "LoRA r=8": ("lora", "LoRA", {"r": 8}),
            "Block exp. p=2": ("block_expansion", "block expansion", {"p": 2})}


def record(label, lr, new, knn, head, *, steps=6, seed=0, curve=None, instance=None):
    """A minimal run record of the smoke preset: what records_frame and the axes read (the instance
    probe's accuracy after fine-tuning where `instance` is given, against a baseline of 30)."""
    method, family, hparams = FAMILIES[label]
    probe = {"instance": {"baseline": {"20": 30.0}, "after": {"20": instance}}} if instance is not None else {}
    return {
        "run": f"{method}_{lr}_{steps}_seed{seed}", "preset": "smoke", "method": method, "family": family,
        "label": label, "hparams": hparams, "seed": seed, "trainable_params": 1000,
        "config": {"selection": "held-out", "train": {"lr": lr, "steps": steps}},
        "metrics": {"new_domain_accuracy": new, "knn": {"20": knn}, "knn_baseline": {"20": 80.0},
                    "linear_head": {"baseline": 78.0, "after": head}, "knn_over_steps": curve or [], **probe},
        "timings": {"train_seconds": 1.0, "images_per_second": 1.0},
    }


def rate_records():
    """At 0.005 Full forgets most; at 0.05 block expansion does (a verdict the rate decides).
    Linear learns least at every rate (the method decides it)."""
    values = {  # label: {lr: (new, knn, head)}
        "Full": {0.005: (90, 70, 40), 0.05: (91, 75, 45)},
        "Top-3": {0.005: (80, 78, 70), 0.05: (85, 77, 60)},
        "Linear": {0.005: (40, 80, 78), 0.05: (50, 80, 78)},
        "LoRA r=8": {0.005: (60, 79, 76), 0.05: (88, 76, 50)},
        "Block exp. p=2": {0.005: (70, 79, 75), 0.05: (89, 72, 35)},
    }
    return [record(label, lr, *(v + seed for v in vals), seed=seed)
            for label, by_rate in values.items() for lr, vals in by_rate.items() for seed in (0, 1)]


@pytest.fixture
def rates():
    return frames.axes_frame(rate_records(), get_preset("smoke"))


def test_the_frame_has_rate_length_both_drops_and_the_paper_rate(rates):
    assert len(rates) == 20 and set(rates["lr"]) == {0.005, 0.05} and set(rates["steps"]) == {6}
    full = rates[(rates["label"] == "Full") & (rates["lr"] == 0.005) & (rates["seed"] == 0)].iloc[0]
    assert full["drop"] == 10 and full["linear_head_drop"] == 38  # 80 - 70 and 78 - 40
    paper = rates[rates["paper_rate"]].groupby("label")["lr"].first().to_dict()
    assert paper == {"Full": 0.005, "Top-3": 0.005, "Linear": 0.005, "LoRA r=8": 0.005, "Block exp. p=2": 0.05}
    summary = stats.axis_summary(rates, "lr")
    row = summary[(summary["label"] == "Full") & (summary["lr"] == 0.005)].iloc[0]
    assert row["seeds"] == 2 and row["new_domain_accuracy"] == 90.5 and row["drop_sd"] == pytest.approx(0.5 ** 0.5)
    assert list(dict.fromkeys(summary["label"])) == list(stats.AXIS_LABELS)


def test_a_claim_the_rate_decides_is_told_from_one_the_method_decides(rates):
    table = verdicts.claims_by_rate(rates)
    most = "Full fine-tuning forgets the pre-training domain the most"
    assert table.loc[most, ("k-NN", "all at 0.005")] == "holds"
    assert table.loc[most, ("k-NN", "all at 0.05")] == "does not hold"  # block expansion drops 7.5 > 4.5
    assert table.loc[most, ("k-NN", "the paper's rates")] == "holds"  # Full at 0.005 (9.5), blocks at 0.05 (7.5)
    least = "Linear fine-tuning learns the new domain least"
    assert set(table.loc[least, "k-NN"].tolist()) == {"holds"}
    note = verdicts.rates_note(verdicts.claims_by_rate(rates))
    assert f"*{most}* (k-NN probe): holds at the paper's rates; holds at 0.005 but not at 0.05: " \
           "the rate decides it." in note
    assert f"*{least}* (the new domain alone): holds at the paper's rates; holds at every common rate: the method " \
           "decides it" in note
    lora = "LoRA reaches Full fine-tuning's new-domain accuracy or better"
    assert table.loc[lora, ("k-NN", "all at 0.05")] == "does not hold"  # 88.5 < 91.5
    headline = verdicts.rates_headline(table)  # every check of the note counted once, by what decides it
    checks = note.count("\n- ") + 1
    assert f"Of the {checks} checks of the paper's claims on this page" in headline
    assert f"the rate decides {note.count('the rate decides it')}" in headline
    assert f"the method decides {note.count('the method decides it')}" in headline
    assert verdicts.rates_headline(table.iloc[:0]) == verdicts.rates_note(table.iloc[:0]) == verdicts.UNCHECKED


def test_the_linear_head_claims_read_the_linear_head(rates):
    table = verdicts.claims_by_rate(rates)
    most = "Full fine-tuning forgets the pre-training domain the most"
    assert table.loc[most, ("linear head", "all at 0.005")] == "holds"  # 37.5 against at most 7.5
    assert table.loc[most, ("linear head", "all at 0.05")] == "does not hold"  # blocks 43 > Full 33
    least = "Linear fine-tuning learns the new domain least"  # the new domain alone: no probe enters
    assert set(table.loc[least, "linear head"]) == {"n/a"}
    note = verdicts.rates_note(verdicts.claims_by_rate(rates))
    assert f"*{least}* (the new domain alone)" in note and f"*{least}* (linear head probe)" not in note
    assert f"*{most}* (linear head probe): does not hold at the paper's rates; holds at 0.005 but not at 0.05" in note


def test_the_learning_note_names_each_family_s_best_rate(rates):
    note = axis_notes.learning_note(rates)
    assert "**LoRA r=8** learnt most at 0.05 (88.50% on the new domain, drops in points: 3.50 k-NN, 27.50 linear-head)" in note
    assert "at the paper's 0.005 it reached 60.50%" in note and "spans 28.00 points" in note


def test_the_rate_chart_has_the_slider_both_probes_and_the_bars_view(rates):
    spec = axis_charts.rate_chart(rates).to_dict()
    text = json.dumps(spec)
    (param,) = [p for p in spec["params"] if p["name"] == axis_charts.RATE_PARAM]
    assert param["bind"]["input"] == "radio" and param["bind"]["options"] == [0, 1] and param["value"] == 0  # 0.005 first
    assert param["bind"]["labels"] == ["0.005", "0.05"]  # the reader sees the rate, not its index
    assert '"name": "at_rate_knn"' in text and '"name": "at_rate_linear_head"' in text and '"linear head probe"' in text and '"k-NN probe"' in text
    values = next(iter(spec["datasets"].values()))
    assert {row["probe"] for row in values} == {"k-NN", "linear head"}
    assert {row["rate_index"] for row in values} == {0, 1}
    assert [c["width"] for c in spec["vconcat"][0]["hconcat"]] == [250, 250]  # fits the book's column


def test_records_with_the_instance_probe_get_its_panels_bars_columns_and_words():
    runs = [record(label, lr, 50 + i, 79 - i, 70 - i, seed=seed, instance=30 - 2 * i)
            for i, label in enumerate(FAMILIES) for lr in (0.005, 0.05) for seed in (0, 1)]
    frame = frames.axes_frame(runs, get_preset("smoke"))
    assert [p.name for p in stats.probes_of(frame, with_baseline=False)] == ["k-NN", "linear head", "instance retrieval"]
    assert [p.name for p in stats.probes_of(frames.axes_frame(rate_records(), get_preset("smoke")), with_baseline=False)] == ["k-NN", "linear head"]
    spec = axis_charts.rate_chart(frame).to_dict()
    top, _, bars = spec["vconcat"]
    assert [c["title"] for c in top["hconcat"]] == ["k-NN probe", "linear head probe", "instance retrieval probe"]
    assert [c["width"] for c in top["hconcat"]] == [160] * 3  # three panels still fit the book's column
    assert [c["name"] for c in bars["hconcat"]] == ["at_rate_learnt", "at_rate_knn", "at_rate_linear_head",
                                                    "at_rate_instance_retrieval"]
    table = tables.runs_table(frame)
    full = table[table["method"] == "Full"].iloc[0]
    assert (full["instance retrieval (%)"], full["instance-retrieval drop"]) == (30.0, 0.0)
    top3 = table[table["method"] == "Top-3"].iloc[0]
    assert top3["instance-retrieval drop"] == 2.0
    assert "drops in points: 1.00 k-NN, 8.00 linear-head, 0.00 instance-retrieval)" in axis_notes.learning_note(frame)
    claims = verdicts.claims_by_rate(frame)
    assert {probe for probe, _ in claims.columns} == {"k-NN", "linear head", "instance retrieval"}


def curve(head: bool, drops: dict):
    return [{"step": step, "knn": {"20": 80.0 - d}, **({"linear_head": 78.0 - 4 * d} if head else {})}
            for step, d in drops.items()]


def test_curves_read_both_probes_and_records_made_before_the_linear_head_curve():
    runs = [record("Full", 0.005, 90, 70, 40, steps=12, curve=curve(True, {0: 0, 3: 1, 12: 2})),
            record("Top-3", 0.005, 80, 78, 70, steps=6, curve=curve(False, {0: 0, 6: 1})),
            record("Linear", 0.005, 40, 80, 78, steps=6)]  # no curve at all
    frame = curve_frames.curves_frame(runs)
    assert set(frame["probe"]) == {"k-NN", "linear head"}
    assert frame[frame["probe"] == "linear head"]["run"].unique().tolist() == [runs[0]["run"]]
    last = frame[(frame["run"] == runs[0]["run"]) & (frame["step"] == 12)].set_index("probe")["drop"]
    assert last.to_dict() == {"k-NN": 2.0, "linear head": 8.0}
    spec = json.dumps(axis_charts.schedule_chart(frames.axes_frame(runs, get_preset("smoke")), frame).to_dict())
    assert f'"name": "{axis_charts.LENGTH_PARAM}"' in spec and '"name": "at_length_linear_head' in spec  # altair numbers repeated layers
    assert '"name": "curve_knn"' in spec and '"name": "curve_linear_head"' in spec
    assert '"labels": ["6", "12"]' in spec  # two schedule lengths, 6 and 12, each a labelled button


def test_the_schedule_note_weighs_the_last_change_against_the_seed_spread(rates):
    runs = [record("Full", 0.005, 90, knn, head, steps=n) for n, knn, head in ((6, 70, 40), (12, 60, 39), (24, 50, 39))]
    frame = frames.axes_frame(runs, get_preset("smoke"))
    noise = rates.copy()
    noise.loc[(noise["label"] == "Full") & (noise["seed"] == 1), ["drop", "linear_head_drop"]] = [12.0, 40.0]
    note = axis_notes.schedule_note(frame, noise)  # Full's seed sd at 6 steps: k-NN 1.41, linear head 1.41
    assert "**Full** at 6, 12, 24 steps: k-NN drop 10.00, 20.00, 30.00 points (still grows: +10.00 from 12 to 24" in note
    assert "linear head drop 38.00, 39.00, 39.00 points (is flat within twice the seed spread: +0.00" in note
    with pytest.raises(ValueError, match="no schedule-axis records"):  # the page's guard speaks for them
        axis_notes.schedule_note(frames.axes_frame([], get_preset("smoke")))


def test_every_run_is_a_row_and_rates_keep_their_digits(rates):
    table = tables.runs_table(rates)
    assert len(table) == len(rates) and set(table["learning rate"]) == {0.005, 0.05}
    assert list(table.columns[:4]) == ["method", "learning rate", "steps", "seed"]
    assert {"k-NN drop", "linear-head drop"} <= set(table.columns)


def test_the_probes_note_and_the_grids_note_come_from_the_data(rates):
    note = axis_notes.probe_gap_note(rates)
    moved = rates[rates["label"] != "Linear"]
    assert f"Over the {len(moved)} runs" in note
    assert f"larger than the k-NN drop in {int((moved['linear_head_drop'] > moved['drop']).sum())}" in note
    grids = setup_notes.grids_note(get_preset("mini"))
    assert "rates 0.001, 0.005, 0.015, 0.05" in grids and "10,000 (Full only)" in grids
    assert "schedules of 300, 1,000, 3,000" in grids


def test_the_budget_note_reads_the_benchmark_record(tmp_path):
    assert "not measured in this checkout yet" in setup_notes.axes_budget_note(tmp_path)
    assert "`python benchmarks/book_budget.py --job glyphs-axes` measures it" in setup_notes.axes_budget_note(tmp_path, "mini-glyphs")
    other = setup_notes.axes_budget_note(tmp_path, "paper")
    assert "No `make` job runs the axes of the `paper` preset" in other and "for mini, mini-glyphs" in other
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "axes_budget.json").write_text(json.dumps({
        "steps": [{"step": "mini schedule axis", "seconds": 1200.4}, {"step": "mini rate axis", "seconds": 900}],
        "total_seconds": 2100.4, "target_seconds": 2700, "within_target": True, "command": "python b.py --job axes",
        "environment": {"hardware": "2 cores"}, "axis_runs": {"planned": 71, "recorded_before": []}}))
    note = setup_notes.axes_budget_note(tmp_path)
    assert "took 35.0 min on 2 cores (mini schedule axis 1200 s; mini rate axis 900 s)" in note
    assert "target of 45 min: met" in note and "planned 71 runs, of which 0 were recorded" in note


def test_with_per_query_correctness_a_close_claim_is_inconclusive_and_the_note_says_so():
    import numpy as np

    from vitcf.base.uncertainty import pack

    def hits(accuracy, seed):
        out = np.zeros(2000, dtype=bool)
        out[np.random.default_rng(seed).permutation(2000)[:round(accuracy * 20)]] = True
        return pack(out)

    runs = rate_records()
    for run in runs:  # LoRA at 0.05 learns as much as Full there: 91.5 on average
        if run["label"] == "LoRA r=8" and run["config"]["train"]["lr"] == 0.05:
            run["metrics"]["new_domain_accuracy"] = 91 + run["seed"]
    for i, run in enumerate(runs):  # the k-NN probe's and the new domain's right answers, as the means say
        m = run["metrics"]
        m["correct"] = {"knn": {"20": hits(m["knn"]["20"], i)}, "new_domain": hits(m["new_domain_accuracy"], 100 + i)}
    frame = frames.axes_frame(runs, get_preset("smoke"))
    table = verdicts.claims_by_rate(frame, runs)
    most = "Full fine-tuning forgets the pre-training domain the most"
    assert table.loc[most, ("k-NN", "all at 0.005")] == "holds"  # Full drops 9.5 points, the next one 1.5
    lora = "LoRA reaches Full fine-tuning's new-domain accuracy or better"
    assert table.loc[lora, ("k-NN", "all at 0.05")] == "inconclusive"  # a tie, on 2 seeds x 2,000 images
    assert table.loc[lora, ("linear head", "all at 0.05")] == "n/a"
    assert table.loc[most, ("linear head", "all at 0.005")] == "holds"  # no head correctness: the means decide
    note = verdicts.rates_note(table)
    assert f"*{lora}* (the new domain alone): does not hold at the paper's rates; does not hold at 0.005 and is " \
           "inconclusive at 0.05: the method decides it wherever the records can tell." in note
    assert verdicts.claims_by_rate(frame).loc[lora, ("k-NN", "all at 0.05")] == "holds"  # means only: 91.5 >= 91.5
