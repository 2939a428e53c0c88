"""The resolution axis: the knob (a run on a downsampled new domain), its grid, and the page's numbers."""

import json

import numpy as np
import pytest
import torch

from vitcf.book import axis_charts, axis_notes, evidence, tables
from vitcf.engine.batching import at_source_size, check_source_size
from vitcf.engine.sources import ImageSet
from vitcf.book.evidence import NEW_DOMAIN
from vitcf.engine.presets import get_preset
from vitcf.engine.study import plan_from_record, plan_run
from vitcf.engine.naming import grid_keys
from vitcf.engine.sweep import plan_sweep
from vitcf.base.uncertainty import FAILS, HOLDS, INCONCLUSIVE, pack

SMOKE = get_preset("smoke")
QUERIES = 400
FAMILIES = {"Full": ("full", {}), "Top-3": ("top_k", {"k": 3}), "LoRA r=8": ("lora", {"r": 8}),
            "Block exp. p=2": ("block_expansion", {"p": 2})}


# --- the knob ---------------------------------------------------------------------------------------

def test_downsampling_keeps_labels_and_blurs_to_the_asked_side():
    images = torch.zeros(3, 1, 8, 8, dtype=torch.uint8)
    images[:, :, ::2, :] = 255  # stripes one pixel wide: no 4-pixel image can hold them
    ds = ImageSet("stripes", images, torch.tensor([0, 1, 2]), ("a", "b", "c"))
    small = at_source_size(ds, 4)
    assert small.size == 4 and small.images.dtype == torch.uint8 and torch.equal(small.labels, ds.labels)
    grey = (small.images.float() - 127.5).abs()
    assert grey[..., 1:-1, :].max() < 2 and grey.max() < 25  # the stripes average out to grey (edges near it)
    assert at_source_size(ds, None) is ds and at_source_size(ds, 8) is ds
    with pytest.raises(ValueError, match="only downsamples"):
        at_source_size(ds, 16)


@pytest.mark.parametrize("size", [1, 8, 9, 2.5, True])
def test_a_source_size_outside_the_datasets_range_is_refused_naming_it(size):
    with pytest.raises(ValueError, match=r"source size for digits .* must be an integer in \[2, 7\], got"):
        check_source_size("digits", size)
    with pytest.raises(ValueError, match="source size"):
        plan_run("smoke", "linear", source_size=size)


def test_a_run_at_a_source_size_has_its_own_name_and_protocol_and_replans_to_itself(tmp_path):
    native = plan_run("smoke", "full", results_dir=tmp_path)
    small = plan_run("smoke", "full", source_size=4, results_dir=tmp_path)
    assert small.path != native.path and small.preset.source_size == 4
    assert "source_size" not in native.preset.protocol()  # records at the native resolution read as before
    assert small.preset.protocol()["source_size"] == 4
    record = {"run": small.path.stem, "preset": "smoke", "method": "full", "hparams": small.method.hparams,
              "seed": 0, "config": {"preset": small.preset.protocol(), "train": {"steps": 6, "lr": small.train.lr},
                                    "backbone_weights": small.weights, "paper_faithful": False,
                                    "forgetting_steps": []}}
    assert plan_from_record(json.loads(json.dumps(record)), results_dir=tmp_path).path == small.path


def test_the_resolution_grid_runs_every_family_at_each_lower_size_and_passes_the_size_to_the_notebook(tmp_path):
    runs = plan_sweep("mini-glyphs", grid="resolution", seeds=[0, 1], results_dir=tmp_path)
    assert len(runs) == 5 * 2 * 2 and {r.plan.preset.source_size for r in runs} == {7, 14}
    assert all(r.plan.forgetting_steps == () for r in runs)  # compared at the end of training
    assert {r.parameters()["source_size"] for r in runs} == {7, 14}
    assert len(grid_keys("mini-glyphs", "resolution")) == 10
    assert {p.source_size for p in get_preset("paper").resolution} == {8, 16}  # the knob at paper scale


def test_a_smoke_run_trains_on_the_downsampled_domain_and_records_its_size(tmp_path):
    from vitcf.engine.study import execute

    record = execute(plan_run("smoke", "linear", source_size=4, results_dir=tmp_path), progress=False)
    assert record["config"]["preset"]["source_size"] == 4
    assert evidence.source_size(record, SMOKE) == 4


# --- the page's numbers -------------------------------------------------------------------------------

def _correct(n_right: int, rng) -> dict:
    hits = np.zeros(QUERIES, dtype=bool)
    hits[rng.choice(QUERIES, n_right, replace=False)] = True
    return hits


def _record(label, size, seed, hits):
    method, hparams = FAMILIES[label]
    packed = pack(hits)
    preset = SMOKE.protocol() | ({"source_size": size} if size != 8 else {})
    return {"run": f"{method}_{size}_seed{seed}", "label": label, "seed": seed, "method": method,
            "hparams": hparams, "config": {"preset": preset},
            "metrics": {"correct": {"knn": {"20": packed}, "linear_head": packed, "new_domain": packed}}}


@pytest.fixture
def axis():
    """Full gets 80 of 400 queries fewer right at 4 px than at 8 (a known 20-point effect); LoRA gets the
    same queries right at both (unchanged); block expansion 80 more at 4 px; Top-3 one query apart."""
    rng = np.random.default_rng(0)
    before = np.ones(QUERIES, dtype=bool)
    runs = []
    for seed in (0, 1):
        full = _correct(320, rng)
        lower = full.copy()
        lower[np.flatnonzero(full)[:80]] = False
        top = _correct(300, rng)
        nudged = top.copy()
        nudged[np.flatnonzero(top)[0]] = False
        lora = _correct(360, rng)
        block = _correct(200, rng)
        more = block.copy()
        more[np.flatnonzero(~block)[:80]] = True
        for label, native, small in (("Full", full, lower), ("Top-3", top, nudged), ("LoRA r=8", lora, lora),
                                     ("Block exp. p=2", block, more)):
            runs += [_record(label, 8, seed, native), _record(label, 4, seed, small)]
    baseline = {"correct": {"knn": {"20": pack(before)}, "linear_head": pack(before)}}
    return runs, baseline


def test_the_effect_and_its_verdict_come_out_as_built(axis):
    runs, _ = axis
    effects = evidence.resolution_effects(runs, SMOKE)
    knn = effects[effects["probe"] == "k-NN"].set_index("label")
    assert knn.loc["Full", "effect"] == pytest.approx(20.0) and knn.loc["Full", "verdict"] == HOLDS
    assert knn.loc["Full", "low"] > 15 and knn.loc["Full", "high"] < 25
    assert knn.loc["Block exp. p=2", "effect"] == pytest.approx(-20.0) and knn.loc["Block exp. p=2", "verdict"] == FAILS
    assert knn.loc["Top-3", "verdict"] == INCONCLUSIVE
    assert knn.loc["LoRA r=8", "verdict"] == "unchanged"
    assert set(effects["probe"]) == {"k-NN", "linear head"}  # only the probes the records carry


def test_drops_and_new_domain_accuracy_have_intervals_per_family_and_size(axis):
    runs, baseline = axis
    table = evidence.resolution_drops(runs, baseline, SMOKE)
    row = table[(table["label"] == "Full") & (table["probe"] == "k-NN") & (table["source_size"] == 4)].iloc[0]
    assert row["drop"] == pytest.approx(40.0) and row["low"] < 40 < row["high"] and row["seeds"] == 2
    learnt = table[(table["probe"] == NEW_DOMAIN) & (table["label"] == "LoRA r=8")]
    assert learnt["drop"].tolist() == pytest.approx([90.0, 90.0])  # new-domain accuracy, at 4 and 8 px
    assert list(dict.fromkeys(table["label"])) == ["Full", "Top-3", "LoRA r=8", "Block exp. p=2"]


def test_the_note_names_each_verdict_with_its_interval(axis):
    runs, baseline = axis
    text = axis_notes.resolution_note(evidence.resolution_effects(runs, SMOKE), evidence.resolution_drops(runs, baseline, SMOKE))
    knn = next(line for line in text.splitlines() if line.startswith("- **k-NN**"))
    assert "forgets more at 4 px: Full 20.00 [" in knn and "forgets less at 4 px: Block exp. p=2 -20.00 [" in knn
    assert "no clear difference: Top-3" in knn and "unchanged (its backbone is frozen): LoRA r=8" in knn
    assert "**What is learnt**" in text


def test_the_chart_has_a_picker_over_the_sizes_and_a_panel_per_probe(axis):
    runs, baseline = axis
    spec = axis_charts.resolution_chart(evidence.resolution_drops(runs, baseline, SMOKE), 8).to_dict()
    picker = spec["params"][0]
    assert picker["bind"]["input"] == "radio" and picker["bind"]["options"] == [4, 8]
    assert picker["bind"]["labels"] == ["4 px", "8 px (native)"]
    titles = json.dumps(spec)
    assert "k-NN drop" in titles and "linear head drop" in titles and "New-domain test accuracy" in titles
    view = tables.resolution_effect_view(evidence.resolution_effects(runs, SMOKE))
    assert view.shape == (4, 4) and list(view.columns[:2]) == ["method", "source size (px)"]
    assert view.iloc[0, :2].tolist() == ["Full", 4] and "20.00 [" in view.iloc[0, 2]


def test_an_empty_axis_says_so():
    with pytest.raises(ValueError, match="--grid resolution"):
        axis_charts.resolution_chart(evidence.resolution_drops([], None, SMOKE), 8)
    assert "No family" in axis_notes.resolution_note(evidence.resolution_effects([], SMOKE), evidence.resolution_drops([], None, SMOKE))


def test_the_note_says_when_every_family_learns_the_blurred_domain_better():
    import pandas as pd

    table = pd.DataFrame([["Full", NEW_DOMAIN, 4, 60.0, 58, 62, 1], ["Full", NEW_DOMAIN, 8, 50.0, 48, 52, 1],
                          ["Top-3", NEW_DOMAIN, 4, 40.0, 38, 42, 1], ["Top-3", NEW_DOMAIN, 8, 37.5, 35, 40, 1]],
                         columns=evidence.RESOLUTION_COLUMNS)
    effects = pd.DataFrame([["Full", "k-NN", 4, 8, 1.0, 0.5, 1.5, HOLDS]], columns=evidence.EFFECT_COLUMNS)
    text = axis_notes.resolution_note(effects, table)
    assert "every family learns the new domain better at 4 px, its test accuracy 2.5 to 10.0 points above 8 px's" in text


def test_each_interval_is_drawn_from_its_low_to_its_high_end(axis):
    runs, baseline = axis
    spec = axis_charts.resolution_chart(evidence.resolution_drops(runs, baseline, SMOKE), 8).to_dict()
    rules = [layer for row in spec["vconcat"] for panel in row["hconcat"] for layer in panel["layer"]
             if layer["mark"]["type"] == "rule" and "y2" in layer["encoding"]]
    assert rules and all(r["encoding"]["y"]["field"] == "low" and r["encoding"]["y2"]["field"] == "high" for r in rules)
