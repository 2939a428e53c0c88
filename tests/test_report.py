"""The book's pages from the records: what they load, their tables and sentences, and the paper's claims."""

import json

import pandas as pd
import pytest

from vitcf.book import (
    curve_charts,
    curve_frames,
    frames,
    notes,
    pages,
    sections,
    setup_notes,
    stats,
    tables,
    verdicts,
)
from vitcf.base.paper import DINO_VITB16_KNN, PAPER_ROWS
from vitcf.engine.presets import get_preset
from vitcf.base.io import write_json
from vitcf.book.frames import records_frame
from vitcf.model import revert
from vitcf.engine.study import run


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory):
    """A results root with smoke records: linear (seeds 0, 1), LoRA r=8 and block expansion p=2."""
    root = tmp_path_factory.mktemp("results")
    for method, hparams, seed in (("linear", {}, 0), ("linear", {}, 1), ("lora", {"r": 8}, 0),
                                  ("block_expansion", {"p": 2}, 0)):
        run("smoke", method, hparams, seed, results_dir=root / "smoke", progress=False, forgetting_steps=())
    return root


def frame_of(rows, head=None):
    """A records_frame-shaped frame from (label, family, params, new-domain, k-NN) with baseline 50; the
    linear head (baseline 60) keeps `head[label]` where given, else 10 points less than the k-NN probe."""
    head = head or {}
    return pd.DataFrame([{"label": label, "family": family, "trainable_params": params, "new_domain_accuracy": new,
                          "pretrain_knn": knn, "pretrain_knn_baseline": 50.0, "drop": 50.0 - knn,
                          "linear_head_after": head.get(label, knn - 10), "linear_head_baseline": 60.0,
                          "linear_head_drop": 60.0 - head.get(label, knn - 10), "seed": 0}
                         for label, family, params, new, knn in rows])


GRID = frame_of([("Full", "standard", 1000, 90.0, 20.0), ("Top-3", "standard", 300, 85.0, 45.0),
                 ("Linear", "standard", 10, 70.0, 50.0), ("LoRA r=8", "LoRA", 40, 88.0, 40.0),
                 ("Block exp. p=3", "block expansion", 300, 89.0, 48.0),
                 ("Block exp. p=1", "block expansion", 100, 80.0, 49.0)])


def test_load_study_reads_one_presets_records(smoke_results, monkeypatch):
    monkeypatch.setenv(pages.RESULTS_ENV, str(smoke_results))
    monkeypatch.delenv(pages.PRESET_ENV, raising=False)
    study = pages.load_study("smoke")
    assert not study.empty and not study.overridden and study.baseline is not None
    assert sorted(r["run"] for r in study.runs) == ["block_expansion_p2_seed0", "linear_seed0", "linear_seed1",
                                                     "lora_r8_seed0"]
    assert study.source().startswith("Numbers on this page: 4 run record(s) of the `smoke` preset "
                                     "(3 configurations, seeds 0, 1)")
    assert "in place of" not in study.source()
    assert len(study.frame()) == 4


def test_a_page_shows_only_its_grids_runs(tmp_path, monkeypatch):
    """Core, design and a run with a changed schedule share the preset's folder; each page shows its own."""
    from vitcf.engine.study import execute, plan_run
    from vitcf.engine.sweep import plan_sweep

    folder = tmp_path / "smoke"
    for plan in [plan_run("smoke", "linear", {}, 0, results_dir=folder, forgetting_steps=()),
                 plan_run("smoke", "linear", {}, 0, results_dir=folder, forgetting_steps=(), steps=3),
                 *(r.plan for r in plan_sweep("smoke", grid="design", only=["LoRA r=4", "Top-1"], results_dir=folder))]:
        execute(plan, progress=False)
    (folder / "top_k_k2_seed0.error.json").write_text("{}")  # a failed design run
    monkeypatch.setenv(pages.RESULTS_ENV, str(tmp_path))
    monkeypatch.delenv(pages.PRESET_ENV, raising=False)
    core, design = pages.load_study("smoke"), pages.load_study("smoke", grid="design")
    assert [r["run"] for r in core.runs] == ["linear_seed0"] and core.failed == []
    assert sorted(r["label"] for r in design.runs) == ["LoRA r=4", "Top-1"] and design.failed == ["top_k_k2_seed0"]
    assert {r["config"]["train"]["lr"] for r in design.runs} == {0.005}
    assert len(list(folder.glob("linear_seed0_*.json"))) == 1  # the 3-step run: recorded, shown on neither page


def test_the_preset_override_is_announced(smoke_results, monkeypatch):
    monkeypatch.setenv(pages.RESULTS_ENV, str(smoke_results))
    monkeypatch.setenv(pages.PRESET_ENV, "smoke")
    study = pages.load_study("mini")
    assert study.preset == "smoke" and study.requested == "mini" and study.overridden
    assert "This build shows the `smoke` preset in place of this page's `mini`" in study.source()
    monkeypatch.setenv(pages.PRESET_ENV, "tiny")
    with pytest.raises(ValueError, match="unknown preset 'tiny'; allowed: paper, mini, smoke"):
        pages.load_study("mini")


def test_an_empty_study_says_what_to_run_and_lists_failures(tmp_path, monkeypatch):
    monkeypatch.setenv(pages.RESULTS_ENV, str(tmp_path))
    monkeypatch.delenv(pages.PRESET_ENV, raising=False)
    study = pages.load_study("smoke")
    assert study.empty and study.runs == [] and study.baseline is None
    assert study.source() == f"No run record of the `smoke` preset was in `{tmp_path / 'smoke'}` when this page was built."
    assert pages.missing_runs(study) == (f"No run of the `smoke` preset is recorded in `{tmp_path / 'smoke'}` yet. "
                                          "`vitcf sweep --preset smoke` fills this page.")
    write_json(tmp_path / "smoke" / "full_seed0.error.json", {"error": "boom"})
    study = pages.load_study("smoke")
    assert study.failed == ["full_seed0"]
    assert "1 run(s) failed: see their `.error.json` files." in pages.missing_runs(study)
    assert str(pages.shown(study, lambda s: 1 / 0).data).startswith("No run of the `smoke` preset")
    design = pages.load_study("smoke", grid="design")
    assert design.failed == [] and pages.missing_runs(design).endswith(
        "`vitcf sweep --preset smoke --grid design` fills this page.")


def test_a_missing_shipped_backbone_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv(pages.RESULTS_ENV, str(tmp_path))
    monkeypatch.delenv(pages.PRESET_ENV, raising=False)
    monkeypatch.setenv("VITCF_WEIGHTS_DIR", str(tmp_path / "weights"))
    text = pages.missing_runs(pages.load_study("mini"))
    assert "The `mini` backbone's pre-trained weights are not in this checkout either: " \
           "`vitcf pretrain --preset mini` makes them" in text
    assert f"not in this checkout (`{tmp_path / 'weights' / 'mini.safetensors'}`)" in sections.backbone_view(
        get_preset("mini")).data
    assert "randomly initialised `micro` ViT" in sections.backbone_view(get_preset("smoke")).data
    assert "timm/vit_base_patch16_224.dino" in sections.backbone_view(get_preset("paper")).data


def card(**changes):
    base = {
        "backbone": "mini", "architecture": {"depth": 12}, "data": {"dataset": "fashion_mnist", "images": 60000},
        "config": {"epochs": 100, "batch_size": 512}, "seed": 0, "train_seconds": 1230.0, "images_per_second": 4878.0,
        "knn": {"protocol": "weighted k-NN", "pretrained": {"10": 88.5, "20": 88.25}, "random_init": {"20": 65.6}},
        "quality_bar": {"k": 20, "min_accuracy": 88.0, "met": True},
        "weights": {"file": "mini.safetensors", "sha256": "ab" * 32, "bytes": 2_500_000},
        "environment": {"hardware": "NVIDIA H100", "git_commit": "abc123"}, "created_at": "2026-11-23T10:00:00+00:00",
    }
    return base | changes


def test_the_provenance_table_reads_the_card(tmp_path, monkeypatch):
    table = tables.provenance(card())
    assert table.loc["k-NN accuracy, k=20", ""] == "88.25% (random init: 65.60%)"
    assert table.loc["wall time", ""] == "20.5 min (4,878 images/s while training)"
    assert table.loc["quality bar", ""] == "met (k=20 at least 88.0%)"
    assert "60,000 fashion_mnist training images (labels unused), 100 epochs, batch 512" in table.loc["pre-training", ""]
    assert table.loc["backbone", ""] == "mini: depth: 12"
    assert table.loc["made", ""] == "2026-11-23T10:00:00+00:00, commit abc123"
    dirty = tables.provenance(card(environment={"hardware": "CPU", "git_commit": "0123456789abcdef0123-dirty"}))
    assert dirty.loc["made", ""].endswith("commit 0123456789ab, with changes not yet committed")  # no "-dirty"
    vit = {"depth": 12, "embed_dim": 64, "num_heads": 4, "patch_size": 7, "img_size": 28, "in_chans": 1,
           "qkv_bias": True}
    assert tables.architecture_text(vit) == ("12 blocks of width 64, 4 heads, 7x7 patches of 28x28 images with 1 channel "
                                             "(qkv bias: yes)")  # no dict repr
    missed = tables.provenance(card(quality_bar={"k": 20, "min_accuracy": 88.0, "met": False}))
    assert missed.loc["quality bar", ""].startswith("NOT met")
    monkeypatch.setenv("VITCF_WEIGHTS_DIR", str(tmp_path))
    (tmp_path / "mini.json").write_text(json.dumps(card()))
    assert pages.weights_card("mini") == card() and pages.weights_card("micro") is None
    assert sections.backbone_view(get_preset("mini")).equals(table)


def test_the_backbone_section_says_plainly_how_good_the_weights_are():
    curve = {"protocol": "subset", "epochs": [{"epoch": 1, "loss": 4.0, "knn": 60.0}, {"epoch": 2, "loss": 3.5,
                                                                                       "knn": 70.0}]}
    knn = {"protocol": "weighted k-NN", "pretrained": {"20": 82.0}, "random_init": {"20": 65.6},
           "raw_pixels": {"20": 84.6}}
    bar = {"k": 20, "min_accuracy": 85.0, "met": False, "stretch_accuracy": 88.0, "stretch_met": False,
           "fallback_margin": 15.0, "fallback_met": True, "shippable": True}
    weak = card(knn=knn, quality_bar=bar, learning_curve=curve, wall_seconds=4800.0)
    note = setup_notes.backbone_note(weak)
    assert "**82.00%**" in note and "65.60%" in note and "84.60% for the raw pixels" in note
    assert "**That is 3.00 points short of the project's bar of 85.0%**" in note
    assert "2.60 points below the raw pixels" in note and "which it meets" in note
    assert tables.provenance(weak).loc["quality bar", ""].startswith("NOT met (k=20 at least 85.0%); shipped under")
    assert tables.provenance(weak).loc["wall time", ""].startswith("80.0 min")
    assert "2.60 points below the raw pixels' 84.60%" in setup_notes.pixels_comparison(weak)
    good = card(knn=knn | {"pretrained": {"20": 88.5}}, quality_bar=bar | {"met": True, "stretch_met": True})
    assert setup_notes.backbone_note(good).endswith("That meets the project's bar of 85.0%.")
    assert "stretch goal of 88.0% met" in tables.provenance(good).loc["quality bar", ""]

    assert list(curve_frames.pretrain_curve_frame(weak)["knn"]) == [60.0, 70.0]
    spec = curve_charts.pretrain_curve_chart(weak).to_dict()
    assert len(spec["hconcat"]) == 2
    with pytest.raises(ValueError, match="no learning curve"):
        curve_charts.pretrain_curve_chart(card())


def test_the_protocol_table_summarises_the_grids():
    table = tables.protocol_table(get_preset("paper"))
    assert table.loc["design", "value"] == "36 design points (the design-space page)"
    assert table.loc["grid", "value"].startswith("10 configurations")
    assert table.loc["rates", "value"] == "20 points of the learning-rate axis"
    assert (table.loc["knn mean", "value"], table.loc["pretrained", "value"]) == ("0.485, 0.456, 0.406", "yes")
    assert table.loc["curve probe", "value"] == "none"
    for value in table["value"]:  # no Python reprs for a reader
        assert not any(mark in value for mark in ("{", "None", "True", "False", "GridPoint", "((")), value


def test_results_table_gives_mean_and_spread_over_seeds(smoke_results, monkeypatch):
    monkeypatch.setenv(pages.RESULTS_ENV, str(smoke_results))
    monkeypatch.delenv(pages.PRESET_ENV, raising=False)
    frame = pages.load_study("smoke").frame()
    table = tables.results_table(frame)
    assert list(table.index) == ["Linear", "LoRA r=8", "Block exp. p=2"]  # the paper's family order
    linear = frame[frame["label"] == "Linear"]["new_domain_accuracy"]
    assert table.loc["Linear", "new domain (%)"] == f"{linear.mean():.2f} ± {linear.std():.2f}"
    lora = frame[frame["label"] == "LoRA r=8"].iloc[0]
    assert table.loc["LoRA r=8", "new domain (%)"] == f"{lora['new_domain_accuracy']:.2f}"  # one seed: no spread
    assert table.loc["LoRA r=8", "trainable params"] == f"{lora['trainable_params']:,}"
    assert table.loc["Linear", "k-NN drop (points)"] == "0.00 ± 0.00"  # a frozen backbone cannot forget
    assert table.loc["Linear", "linear-head drop (points)"] == "0.00 ± 0.00"  # by either probe
    assert table.loc["Linear", "instance drop (points)"] == "0.00 ± 0.00"  # the instance probe too
    assert list(table.columns[:4]) == ["family", "trainable params", "learning rate", "seeds"]
    assert table.loc["LoRA r=8", "learning rate"] == f"{lora['lr']:g}"  # the rate explains a row's accuracy
    assert list(table.columns[4:]) == ["new domain (%)", "k-NN probe (%), k=20", "k-NN drop (points)",
                                       "linear-head probe (%)", "linear-head drop (points)",
                                       "re-fitted head drop (points)",
                                       "instance retrieval (%), k=20", "instance drop (points)"]
    # Linear's features are the pre-trained ones, so a head re-fitted on them is the frozen head: no drop
    assert table.loc["Linear", "re-fitted head drop (points)"] == "0.00 ± 0.00"
    head = frame[frame["label"] == "LoRA r=8"].iloc[0]
    assert table.loc["LoRA r=8", "linear-head drop (points)"] == (
        f"{head['linear_head_baseline'] - head['linear_head_after']:.2f}")


def test_paper_reference_and_chart_frame_are_the_papers_rows():
    table = tables.paper_reference()
    assert len(table) == len(PAPER_ROWS) == 10
    assert table.loc["Full", "CIFAR-100 (%)"] == 88.13 and table.loc["Full", "drop from 76.1 (points)"] == 50.86
    chart = frames.paper_chart_frame()
    assert (chart["pretrain_knn_baseline"] == DINO_VITB16_KNN).all()
    assert chart.set_index("label").loc["Block exp. p=1", "drop"] == pytest.approx(0.35)


def test_timing_table_and_summary(smoke_results, monkeypatch):
    monkeypatch.setenv(pages.RESULTS_ENV, str(smoke_results))
    monkeypatch.delenv(pages.PRESET_ENV, raising=False)
    study = pages.load_study("smoke")
    table = tables.timing_table(study)
    assert list(table.columns) == ["train (s)", "eval (s)", "total (s)", "training images/s"]
    assert table.index.names == ["method", "seed"] and len(table) == 4
    assert (table["total (s)"] >= table["train (s)"]).all()
    total = sum(r["timings"]["total_seconds"] for r in study.runs)
    summary = setup_notes.timing_summary(study)
    assert summary.startswith(f"The 4 recorded runs took {total:,.0f} s ({total / 3600:.2f} h) in all, "
                              f"{total / 2:,.0f} s per seed, on ")
    assert study.runs[0]["environment"]["hardware"] in summary
    monkeypatch.setenv(pages.RESULTS_ENV, str(smoke_results / "none"))
    empty = pages.load_study("smoke")  # the page's one guard speaks for the note
    assert pages.shown(empty, setup_notes.timing_summary).data.startswith("No run of the `smoke` preset")


def test_linear_note_states_its_gap_drop_and_ranks():
    note = notes.linear_note(GRID)
    assert note.startswith("Linear fine-tuning reached 70.00% on the new domain: 20.00 points below full "
                           "fine-tuning (90.00%) and 20.00 below the best configuration (Full).")
    assert "it kept 50.00% of k-NN accuracy against 50.00% before fine-tuning, a drop of 0.00 points, " \
           "while full fine-tuning dropped 30.00. On the linear-head probe it dropped 20.00 points and full " \
           "fine-tuning 50.00." in note
    # scores at w=0.5: Block exp. p=1 64.5, p=3 68.5, Top-3 65, Linear 60, LoRA 64, Full 55
    assert "At the paper's equal weighting (w = 0.5) it ranks 5 of 6" in note
    # Linear (50) beats Block exp. p=1 (49 kept, 80 learnt) only when w * 1 > (1 - w) * 10: w > 10/11
    assert note.endswith("it ranks first for w from 0.95 to 1.00.")
    assert stats.first_place_weights(GRID, "Full") == [0.0]
    assert notes.linear_note(GRID[GRID["label"] != "Full"]).startswith("*These records lack Full")


def test_the_lora_note_reports_the_revert_checks():
    checks = [revert.RevertCheck("LoRA r=8", 150, 0.0), revert.RevertCheck("Block exp. p=2", 160, 0.0)]
    note = notes.lora_note(GRID, checks)
    assert note.startswith("With the adapter loaded, LoRA lost on the pre-training domain (drop in k-NN points: "
                           "LoRA r=8 10.00), from 50.00% before fine-tuning. On the linear-head probe the drops "
                           "were LoRA r=8 30.00 points, from 60.00% before fine-tuning. Unloading the adapter "
                           "gives back")
    assert "exactly the baseline's 50.00%" in note
    assert notes.lora_note(GRID).endswith("before fine-tuning.")  # no checks: no claim about unloading
    paper = notes.lora_note(frames.paper_chart_frame())  # the paper reports no linear head
    assert "drop in k-NN points" in paper and "linear-head" not in paper
    broken = [revert.RevertCheck("LoRA r=8", 150, 0.5)]
    assert "Unloading did **not** restore the backbone exactly (LoRA r=8: 150 backbone tensors, largest " \
           "difference 0.5)" in notes.lora_note(GRID, broken)


def test_budget_note_compares_counts_and_drops():
    note = notes.budget_note(GRID)
    assert note.startswith("The smallest block expansion (Block exp. p=1) trains 100 parameters, 2.5 times the "
                           "largest LoRA (LoRA r=8, 40).")
    assert "Block expansion's drops on the pre-training domain range from 1.00 to 2.00 points, LoRA's from " \
           "10.00 to 10.00 (on the linear-head probe, block expansion's from 21.00 to 22.00, LoRA's from 30.00 to " \
           "30.00)." in note
    assert note.endswith("Top-3 (300 trainable) and Block exp. p=3 (300) dropped 5.00 and 2.00 points (on the "
                         "linear-head probe, 25.00 and 22.00).")
    assert notes.budget_note(GRID[GRID["family"] != "LoRA"]).startswith("*These records lack")
    vit_b = notes.vit_b_budget()
    assert "7,164,772 for Block exp. p=1 and 371,812 for LoRA r=8" in vit_b
    assert "21,340,516 and 21,340,516" in vit_b and "1.083 times as deep" in vit_b


def test_notes_work_on_real_records(smoke_results, monkeypatch):
    monkeypatch.setenv(pages.RESULTS_ENV, str(smoke_results))
    frame = records_frame(pages.load_study("smoke").runs)
    assert notes.linear_note(frame).startswith("*These records lack Full")
    assert "LoRA r=8" in notes.lora_note(frame) and "Block exp. p=2" in notes.budget_note(frame)


def curves_of(steps_knn: dict[str, list[tuple]]) -> pd.DataFrame:
    """Forgetting curves from (step, k-NN) points, or (step, k-NN, linear head) ones."""
    rows = [{"run": f"{label}_seed0", "label": label, "family": "standard", "seed": 0, "step": point[0], "k": 20,
             "knn": point[1]} | ({"linear_head": point[2]} if len(point) > 2 else {})
            for label, points in steps_knn.items() for point in points]
    return pd.DataFrame(rows)


def test_early_forgetting_apportions_the_drop_to_the_first_steps():
    curves = curves_of({"Full": [(0, 60.0), (1, 50.0), (5, 40.0), (20, 38.0), (300, 35.0)],
                        "Linear": [(0, 60.0), (10, 60.0), (300, 60.0)]})
    table = stats.early_forgetting(curves).set_index("label")
    assert table.loc["Full", "k-NN by step 10"] == 40.0 and table.loc["Full", "step"] == 5  # the last probe <= 10
    assert table.loc["Full", "k-NN share lost by"] == pytest.approx(20 / 25)
    assert pd.isna(table.loc["Linear", "k-NN share lost by"])  # nothing lost, nothing to apportion
    assert table.loc["Full", "linear head seeds"] == 0 and pd.isna(table.loc["Full", "linear head share lost by"])
    note = notes.early_forgetting_note(curves)
    assert "from 60.00% before training to 40.00% after step 5 and 35.00% after step 300" in note
    assert "lost 80% of its whole drop of 25.00 points: most of the forgetting" in note
    slow = curves_of({"Full": [(0, 60.0), (10, 58.0), (300, 40.0)]})
    assert "lost 10% of its whole drop of 20.00 points: less than half" in notes.early_forgetting_note(slow)
    assert notes.early_forgetting_note(curves_of({"Linear": [(0, 1.0), (5, 1.0)]})).startswith("*None of these")
    assert "linear-head" not in note  # curves without the head say nothing about it


def test_early_forgetting_reads_the_linear_head_where_the_curves_have_it():
    both = curves_of({"Full": [(0, 60.0, 70.0), (5, 58.0, 40.0), (300, 50.0, 30.0)]})
    older = curves_of({"Full": [(0, 60.0), (5, 58.0), (300, 50.0)]}).assign(run="Full_seed1", seed=1)
    table = stats.early_forgetting(pd.concat([both, older])).set_index("label")
    assert table.loc["Full", "k-NN seeds"] == 2 and table.loc["Full", "linear head seeds"] == 1
    assert table.loc["Full", "linear head share lost by"] == pytest.approx(30 / 40)
    assert table.loc["Full", "k-NN share lost by"] == pytest.approx(2 / 10)
    note = notes.early_forgetting_note(pd.concat([both, older]))
    assert "lost 20% of its whole drop of 10.00 points: less than half" in note
    assert note.endswith("On the linear-head probe (1 seed(s)), the accuracy goes from 70.00% before training to "
                         "40.00% after step 5 and 30.00% after step 300. By step 5 it has lost 75% of its whole drop "
                         "of 40.00 points: most of the forgetting happens within the first 10 steps on these records.")


def test_the_design_note_reads_each_axis():
    frame = pd.DataFrame([{"axis": "Top-k: blocks trained k", "value": k, "series": "-", "new_domain_accuracy": 60 + k,
                           "pretrain_knn": 50 - 2 * k} for k in (1, 2, 3, 4)])
    note = notes.design_note(frame)
    assert note == ("- **Top-k**: kept most of the pre-training domain at 1 (48.00%) and least at 4 (42.00%) by the "
                    "k-NN probe; learnt most at 4 (64.00% on the new domain); the k-NN accuracy falls as the blocks "
                    "trained k increases (Spearman rho -1.00 over 4 values).")
    both = notes.design_note(frame.assign(linear_head_after=[30.0, 40.0, 35.0, 45.0]))
    assert "by the k-NN probe, and most at 4 (45.00%) and least at 1 (30.00%) by the linear-head probe;" in both
    assert both.endswith("; the linear-head accuracy rises as the blocks trained k increases (Spearman rho +0.80 "
                         "over 4 values).")
    for note in (notes.design_note, notes.design_headline):  # no records: the page's guard speaks for them
        with pytest.raises(ValueError, match="no design-space records"):
            note(frames.design_frame([]))


def test_the_probes_note_sets_the_two_drops_side_by_side():
    note = notes.probes_note(GRID)  # the head drops 70 - k-NN: 50 (Full) to 20 (Linear)
    assert note.startswith("Over the 6 configurations (means over seeds), the drop measured by the k-NN probe ranges "
                           "from 0.00 to 30.00 points and the one measured by the linear-head probe from 20.00 to "
                           "50.00. Full loses the most by the linear head: 50.00 points, against 30.00 by the k-NN "
                           "probe.")
    assert note.endswith("with a Spearman rank correlation of +1.00.")
    reversed_head = frame_of([("Full", "standard", 1000, 90.0, 20.0), ("Top-3", "standard", 300, 85.0, 45.0),
                              ("Linear", "standard", 10, 70.0, 50.0)],
                             head={"Full": 59.0, "Top-3": 30.0, "Linear": 0.0})
    assert notes.probes_note(reversed_head).endswith("correlation of -1.00.")
    assert notes.probes_note(frames.paper_chart_frame()).startswith("*These records carry no linear-head probe")


def test_the_domains_table_gives_each_configurations_mean_or_what_to_run(smoke_results, tmp_path, monkeypatch):
    import shutil

    shutil.copytree(smoke_results / "smoke", tmp_path / "paper-dtd")  # records of the same grid, as if from paper-dtd
    monkeypatch.setenv(pages.RESULTS_ENV, str(tmp_path))
    monkeypatch.delenv(pages.PRESET_ENV, raising=False)
    table = sections.paper_domains_table(("dtd", "food101")).set_index(["preset", "configuration"])
    frame = records_frame(pages.load_study("paper-dtd").runs)
    linear = frame[frame["label"] == "Linear"]
    row = table.loc[("paper-dtd", "Linear")]
    assert row["seeds"] == 2 and row["new-domain accuracy (%)"] == round(linear["new_domain_accuracy"].mean(), 2)
    assert row["pre-training k-NN k=20 (%)"] == round(linear["pretrain_knn"].mean(), 2)
    assert set(table.loc["paper-dtd"].index) == {"Linear", "LoRA r=8", "Block exp. p=2"}
    assert table.loc[("paper-food101", tables.MISSING), "note"] == "no records yet: vitcf sweep --preset paper-food101"
    assert table.loc[("paper-food101", tables.MISSING), "new-domain accuracy (%)"] == tables.MISSING  # not None


def test_the_papers_claims_hold_on_its_numbers_and_are_tested_on_ours():
    paper = frames.paper_chart_frame()
    assert [c["holds"] for c in verdicts.claims(paper)] == [True] * 5
    swapped = paper.copy()  # make LoRA r=8 forget more than full fine-tuning
    swapped.loc[swapped["label"] == "LoRA r=8", "pretrain_knn"] = 10.0
    swapped = swapped.assign(drop=swapped["pretrain_knn_baseline"] - swapped["pretrain_knn"])
    by_claim = {c["claim"]: c for c in verdicts.claims(swapped)}
    assert by_claim["Full fine-tuning forgets the pre-training domain the most"]["holds"] is False
    assert "LoRA r=8 (10.00%)" in by_claim["Full fine-tuning forgets the pre-training domain the most"]["evidence"]
    table = verdicts.claims_table(paper, swapped)
    assert table.loc["Full fine-tuning forgets the pre-training domain the most", verdicts.OURS_KNN] == "does not hold"
    assert (table[verdicts.OURS_HEAD] == "-").sum() == 2  # no linear head in these numbers: nothing to test
    note = verdicts.agreement_note(paper, swapped)
    assert note.startswith("Of the paper's 5 headline claims tested here, our runs agree on 4 by the k-NN probe, "
                           "the one the paper used (ours: 4 hold, 1 does not hold, 0 inconclusive).")
    assert "*Full fine-tuning forgets the pre-training domain the most* (holds in the paper, does not hold" in note
    assert "linear-head" not in note
    assert verdicts.agreement_note(paper, swapped, brief=True) == note.split(". ")[0] + "."  # the counts alone
    missing = verdicts.claims(paper[paper["family"] != "LoRA"])
    assert all(c["holds"] is None for c in missing)
    with pytest.raises(ValueError, match="unknown probe 'cka'"):
        verdicts.claims(paper, "cka")


def test_our_claims_are_tested_by_both_probes():
    """The k-NN probe says block expansion forgets less than LoRA; the linear head says the opposite."""
    rows = [("Full", "standard", 1000, 90.0, 20.0), ("Linear", "standard", 10, 70.0, 50.0),
            ("LoRA r=8", "LoRA", 40, 91.0, 40.0), ("Block exp. p=1", "block expansion", 100, 92.0, 49.0)]
    ours = frame_of(rows, head={"Full": 10.0, "Linear": 60.0, "LoRA r=8": 55.0, "Block exp. p=1": 30.0})
    by_head = {c["claim"]: c for c in verdicts.claims(ours, stats.HEAD.name)}
    blocks = "Every block expansion forgets less than every LoRA"
    assert by_head[blocks]["holds"] is False and by_head[blocks]["forgetting"]
    assert by_head[blocks]["evidence"] == ("linear-head drops: block expansion 30.00 to 30.00 points, "
                                           "LoRA 5.00 to 5.00")
    table = verdicts.claims_table(frames.paper_chart_frame(), ours)
    assert list(table.columns) == [verdicts.PAPER_VERDICT, "paper's numbers", verdicts.OURS_KNN,
                                   "our numbers, k-NN", verdicts.OURS_HEAD, "our numbers, linear head"]
    assert (table.loc[blocks, verdicts.OURS_KNN], table.loc[blocks, verdicts.OURS_HEAD]) == ("holds", "does not hold")
    learns = "Linear fine-tuning learns the new domain least"
    assert table.loc[learns, verdicts.OURS_HEAD] == verdicts.NOT_A_PROBE  # a new-domain claim: no probe enters
    note = verdicts.agreement_note(frames.paper_chart_frame(), ours)
    assert note.startswith("Of the paper's 5 headline claims tested here, our runs agree on 5 by the k-NN probe")
    assert note.endswith("The paper reports no linear-head probe; by ours, 1 of its 2 claims about forgetting come "
                         "out as in the paper, and these do not: *Every block expansion forgets less than every LoRA* "
                         "(holds in the paper, does not hold in ours: linear-head drops: block expansion 30.00 to "
                         "30.00 points, LoRA 5.00 to 5.00).")
    # records that carry the instance probe get its verdicts too, and the note speaks of it
    instance = {"Full": 5.0, "Linear": 30.0, "LoRA r=8": 29.0, "Block exp. p=1": 28.0}
    with_instance = ours.assign(instance_baseline=30.0, instance_after=ours["label"].map(instance))
    with_instance["instance_drop"] = 30.0 - with_instance["instance_after"]
    table = verdicts.claims_table(frames.paper_chart_frame(), with_instance)
    assert list(table.columns[-2:]) == [verdicts.OURS_INSTANCE, "our numbers, instance retrieval"]
    assert table.loc[blocks, verdicts.OURS_INSTANCE] == "does not hold"  # block expansion 2.00 > LoRA 1.00
    assert "no instance-retrieval probe" in verdicts.agreement_note(frames.paper_chart_frame(), with_instance)


def test_an_inconclusive_verdict_by_another_probe_is_not_counted_as_agreement(monkeypatch):
    claims = ["Full fine-tuning forgets the pre-training domain the most",
              "Every block expansion forgets less than every LoRA", "Linear fine-tuning learns the new domain least"]
    table = pd.DataFrame({verdicts.PAPER_VERDICT: ["holds"] * 3, verdicts.OURS_KNN: ["holds"] * 3,
                          "our numbers, k-NN": ["x"] * 3,
                          verdicts.OURS_HEAD: ["inconclusive", "holds", verdicts.NOT_A_PROBE],
                          "our numbers, linear head": ["y"] * 3}, index=pd.Index(claims, name="claim"))
    monkeypatch.setattr(verdicts, "claims_table", lambda *args, **kwargs: table)
    note = verdicts.agreement_note(None, None)
    assert note.endswith("The paper reports no linear-head probe; by ours, 1 of its 2 claims about forgetting come "
                         "out as in the paper and 1 inconclusive.")


def test_a_long_table_folds_away_with_its_rows_as_a_csv_download():
    from urllib.parse import unquote

    frame = pd.DataFrame({"run": [f"r{i}" for i in range(40)], "drop": [i / 3 for i in range(40)]})
    html = tables.collapsible(frame, "Every run", "runs.csv").data
    assert html.startswith('<details class="vitcf-table"><summary>Every run (40 rows; open to read)</summary>')
    href = html.split('href="data:text/csv;charset=utf-8,')[1].split('"')[0]
    assert unquote(href) == frame.to_csv(index=False) and 'download="runs.csv"' in html
    assert "r39" in html and "drop</th>" in html  # every row and column, none cut
    styled = tables.collapsible(frame.style.format({"drop": "{:.2f}"}), "Styled", "s.csv").data
    assert "13.00" in styled  # the Styler's formatting kept


def test_the_budget_table_reads_as_numbers_not_floats():
    summary = {"runs": [{"run": "Full", "seconds": 48.4, "train_images_per_second": 1333.25}]}
    html = tables.budget_runs_table(summary).to_html()
    assert ">48.4<" in html and ">1,333<" in html and "48.400000" not in html
    assert "seconds (incl. probes)" in html and ">0<" not in html  # the columns named for readers, no index


def test_a_folded_table_reads_as_words_and_numbers():
    frame = pd.DataFrame({"method": ["LoRA r=1"], "learning rate": [0.005], "trainable params": [21323],
                          "k-NN sd": [float("nan")], "new domain (%)": [11.234]})
    html = tables.collapsible(frame, "Every configuration", "rows.csv").data
    assert ">0.005<" in html and ">21,323<" in html and ">11.23<" in html and f">{tables.MISSING}<" in html
    assert "nan" not in html.split("</a>")[1] and "0.005000" not in html  # the table, not the CSV link
    assert "0.005" in html.split("</a>")[0]  # the CSV keeps the numbers as they are
