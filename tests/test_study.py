"""End-to-end runs of the smoke preset: real data, real training, real probes, real records."""

import dataclasses
import json

import pytest
import torch

from vitcf.base import io
from vitcf.book.frames import records_frame
from vitcf.engine import records, sources
from vitcf.engine.cli import main
from vitcf.engine.sources import FASHION_MNIST_CLASSES
from vitcf.base.paper import PAPER_ROWS
from vitcf.model.params import count_trainable
from vitcf.engine.presets import PRESETS, get_preset
from vitcf.engine.study import build_model, execute, make_probe, plan_run, run

RECORD_KEYS = {"schema", "run", "preset", "method", "family", "label", "hparams", "seed", "trainable_params",
               "config", "metrics", "timings", "environment", "checkpoint", "history"}


@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("smoke")


@pytest.mark.parametrize("row", PAPER_ROWS, ids=lambda r: f"{r.method}{''.join(map(str, r.hparams.values()))}")
def test_every_paper_row_runs_and_records(smoke_dir, row):
    record = run("smoke", row.method, row.hparams, seed=0, results_dir=smoke_dir, progress=False)
    assert RECORD_KEYS <= record.keys()
    saved = json.loads((smoke_dir / f"{record['run']}.json").read_text())
    assert saved["metrics"] == json.loads(json.dumps(record["metrics"]))
    plan = plan_run("smoke", row.method, row.hparams, 0, results_dir=smoke_dir)
    model = plan.method.apply(build_model(plan.preset, plan.weights, 10, 0))
    assert record["trainable_params"] == count_trainable(model)
    metrics = record["metrics"]
    assert 0 <= metrics["new_domain_accuracy"] <= 100
    assert set(metrics["knn"]) == set(metrics["knn_baseline"]) == {10, 20}
    for k, entry in metrics["forgetting"].items():
        assert entry["drop"] == pytest.approx(metrics["knn_baseline"][k] - metrics["knn"][k])
    assert record["config"]["selection"].startswith("held-out")
    assert record["config"]["train"]["lr"] == row.lr
    assert record["environment"]["versions"]["torch"]
    assert record["timings"]["images_per_second"] > 0


def test_reversible_methods_forget_nothing_at_step_zero_on_the_curve_probe(tmp_path):
    """Block expansion starts as the identity, so its step-0 probe is the pre-trained backbone's on the
    same (smaller) curve probe: exactly what a linear probe, whose backbone never moves, measures at
    every step."""
    record = run("smoke", "block_expansion", {"p": 2}, seed=1, results_dir=tmp_path, progress=False,
                 forgetting_steps=(0, 2, 6))
    frozen = run("smoke", "linear", {}, seed=1, results_dir=tmp_path, progress=False, forgetting_steps=(0, 3, 6))
    over, still = record["metrics"]["knn_over_steps"], frozen["metrics"]["knn_over_steps"]
    assert [o["step"] for o in over] == [0, 2, 6]
    assert over[0]["knn"] == still[0]["knn"] == still[1]["knn"] == still[2]["knn"]
    assert record["config"]["curve_probe"] == {"bank": 200, "queries": 50}  # the smoke preset's
    base = io.read_json(tmp_path / "baseline.json")
    assert base["bank_size"] == 400 and base["classes"] == list(FASHION_MNIST_CLASSES)


def test_the_curve_probe_is_a_prefix_of_the_final_probe():
    probe = make_probe(get_preset("smoke"))
    small = probe.smaller(200, 50)
    assert torch.equal(small.bank.images, probe.bank.images[:200]) and torch.equal(small.queries.labels,
                                                                                  probe.queries.labels[:50])
    assert len(set(small.bank.labels.tolist())) == 10  # a random subset, not the first classes of the split
    assert probe.smaller(10_000, 10_000).bank is probe.bank  # asking for more than there is keeps it whole


def test_same_seed_same_metrics_other_seed_other_run(tmp_path):
    a = run("smoke", "lora", {"r": 4}, seed=3, results_dir=tmp_path / "a", progress=False)
    b = run("smoke", "lora", {"r": 4}, seed=3, results_dir=tmp_path / "b", progress=False)
    c = run("smoke", "lora", {"r": 4}, seed=4, results_dir=tmp_path / "c", progress=False)
    assert a["metrics"] == b["metrics"] and a["history"] == b["history"]
    assert [h["loss"] for h in a["history"]] != [h["loss"] for h in c["history"]]


def test_existing_record_is_skipped_unless_forced(tmp_path):
    plan = plan_run("smoke", "linear", {}, 0, results_dir=tmp_path)
    first = execute(plan, progress=False)
    stamp = plan.path.stat().st_mtime_ns
    again = execute(plan, progress=False)
    assert again["skipped"] and again["metrics"] == json.loads(json.dumps(first["metrics"]))
    assert plan.path.stat().st_mtime_ns == stamp
    execute(plan, force=True, progress=False)
    assert plan.path.stat().st_mtime_ns != stamp
    assert sorted(p.name for p in tmp_path.iterdir()) == ["baseline.json", "baseline_head.safetensors", "linear_seed0.json",
                                                          "weights"]  # the fine-tuned tensors, for the analyses
    assert [p.name for p in (tmp_path / "weights").iterdir()] == ["linear_seed0.safetensors"]


def test_paper_faithful_selects_on_the_test_split(tmp_path):
    record = run("smoke", "linear", {}, 0, results_dir=tmp_path, paper_faithful=True, progress=False)
    assert record["config"]["selection"] == "test split (paper-faithful)"
    assert record["run"] != "linear_seed0"  # never confused with the default protocol's record
    assert record["metrics"]["selection_accuracy"] == pytest.approx(
        max(h["selection_accuracy"] for h in record["history"] if "selection_accuracy" in h))


def test_cli_run_writes_a_record_and_keeps_the_checkpoint(tmp_path, capsys):
    argv = ["run", "--preset", "smoke", "--method", "top_k", "--k", "3", "--seed", "0",
            "--results-dir", str(tmp_path), "--quiet", "--keep-checkpoint"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Top-3 seed 0" in out and "record written" in out
    record = json.loads((tmp_path / "top_k_k3_seed0.json").read_text())
    assert record["checkpoint"].endswith("top_k_k3_seed0.safetensors")
    assert main(argv) == 0
    assert "exists, skipped" in capsys.readouterr().out


def test_records_frame_has_one_row_per_run(tmp_path):
    for method, hparams in [("linear", {}), ("lora", {"r": 8}), ("block_expansion", {"p": 1})]:
        run("smoke", method, hparams, seed=0, results_dir=tmp_path, progress=False)
    frame = records_frame(records.read_records(tmp_path))
    assert list(frame["label"]) == ["Block exp. p=1", "Linear", "LoRA r=8"]  # by file name
    row = frame.set_index("label").loc["LoRA r=8"]
    assert row["pretrain_knn"] == row["knn_20"] and row["trainable_params"] == 12 * 2 * 8 * 64 + 330
    assert row["drop"] == pytest.approx(row["pretrain_knn_baseline"] - row["pretrain_knn"])
    with pytest.raises(ValueError, match="no k-NN result for k=200"):
        records_frame(records.read_records(tmp_path), k=200)


def test_paper_lite_is_the_paper_protocol_with_an_imagenette_probe():
    lite, paper = get_preset("paper-lite"), get_preset("paper")
    assert lite.pretrain_domain == "imagenette" and lite.knn_bank is None and lite.knn_queries is None
    differs = {f.name for f in dataclasses.fields(lite) if getattr(lite, f.name) != getattr(paper, f.name)}
    assert differs == {"name", "description", "pretrain_domain", "forgetting_steps"}  # same backbone, schedule, grid
    for domain in ("cifar10", "dtd", "food101", "flowers102"):
        other = get_preset(f"paper-{domain}")
        assert other.new_domain == domain and other.pretrain_domain == "imagenet" and other.grid == paper.grid


def test_paper_lite_wiring_runs_offline_on_stand_ins(tmp_path, monkeypatch, fake_imagenette):
    """paper-lite's own path, Imagenette loaded through torchvision as the k-NN bank (train) and
    queries (val), with only the ViT-B/16 and CIFAR-100 swapped for the micro ViT and digits."""
    from conftest import IMAGENETTE_WNIDS

    monkeypatch.setattr(sources, "DATA_ROOT", fake_imagenette)
    stand_in = dataclasses.replace(get_preset("paper-lite"), name="lite-stand-in", backbone="micro", pretrained=False,
                                   new_domain="digits", img_size=16, steps=4, batch_size=8, eval_every=2,
                                   forgetting_steps=(0, 4), knn_ks=(5,), eval_batch_size=32)
    monkeypatch.setitem(PRESETS, "lite-stand-in", stand_in)
    record = run("lite-stand-in", "lora", {"r": 4}, results_dir=tmp_path / "runs", progress=False)
    base = io.read_json(tmp_path / "runs" / "baseline.json")
    assert (base["bank_size"], base["query_size"], base["num_classes"]) == (15, 6, 3)
    assert base["classes"] == list(IMAGENETTE_WNIDS.values())
    assert record["config"]["preset"]["pretrain_domain"] == "imagenette"
    assert [o["step"] for o in record["metrics"]["knn_over_steps"]] == [0, 4]
    knn = {str(k): v for k, v in record["metrics"]["knn"].items()}
    assert set(knn) == {"5"} and 0 <= knn["5"] <= 100


def test_runs_of_every_schedule_length_share_the_folder_s_baseline_and_probe_both_ways(tmp_path):
    run("smoke", "linear", {}, results_dir=tmp_path, progress=False, forgetting_steps=())
    before = (tmp_path / "baseline.json").read_bytes()
    longer = run("smoke", "top_k", {"k": 1}, results_dir=tmp_path, steps=12, progress=False,
                 forgetting_steps=(0, 6, 12))
    assert (tmp_path / "baseline.json").read_bytes() == before  # not recomputed for another length
    assert longer["config"]["train"]["steps"] == 12 and longer["run"].startswith("top_k_k1_seed0_")
    curve = longer["metrics"]["knn_over_steps"]
    assert [entry["step"] for entry in curve] == [0, 6, 12]
    assert all(0 <= entry["linear_head"] <= 100 for entry in curve)  # the linear head along the curve too
    assert longer["metrics"]["linear_head"]["baseline"] == io.read_json(tmp_path / "baseline.json")["linear_head"]


def test_every_probe_is_taken_with_its_reference_levels_and_the_full_probe_at_the_first_steps(tmp_path):
    record = run("smoke", "full", {}, seed=0, results_dir=tmp_path, progress=False, forgetting_steps=(0, 3, 6))
    metrics = record["metrics"]
    base = io.read_json(tmp_path / "baseline.json")
    assert set(metrics["instance"]) == {"baseline", "after"} and set(metrics["instance"]["after"]) == {10, 20}
    assert metrics["instance"]["baseline"] == {int(k): v for k, v in base["instance"].items()}
    assert base["instance_probe"] == {"bank_size": 80, "query_size": 80, "source": "fashion_mnist test split"}
    # every probe on raw pixels and on a random-init network; smoke's backbone is random-init itself
    assert set(base["levels"]) == {"raw_pixels", "random_init"}
    for level in base["levels"].values():
        assert set(level) == {"knn", "linear_head", "instance", "correct"}
    assert base["levels"]["random_init"]["knn"] == base["knn"] and base["levels"]["random_init"]["instance"] == base["instance"]
    assert all("instance" in entry for entry in metrics["knn_over_steps"])
    full = metrics["full_probe_over_steps"]
    assert [e["step"] for e in full] == [0, 3]  # smoke's full_probe_steps within the run's forgetting steps
    assert full[0]["knn"] == metrics["knn_baseline"]  # before any update the network is the baseline's
    unprobed = run("smoke", "linear", {}, seed=0, results_dir=tmp_path, progress=False, forgetting_steps=())
    assert unprobed["metrics"]["full_probe_over_steps"] == []
    assert record["config"]["new_domain_data"] is None  # digits are read, not generated


def test_the_positive_control_is_a_grid_of_its_own():
    from vitcf.engine.sweep import plan_sweep

    runs = plan_sweep("smoke", grid="control", results_dir="/tmp/vitcf-control-plan", device="cpu")
    assert [(r.point.method, r.plan.train.lr) for r in runs] == [("full", 0.15), ("reinit", 0.005)]
    assert runs[1].plan.method.hparams == {"blocks": 12} and runs[0].name != "full_seed0"
    glyphs = get_preset("mini-glyphs")
    assert glyphs.new_domain == "glyphs" and glyphs.instance_probe is not None and glyphs.control
    assert glyphs.protocol()["pretrain_domain"] == get_preset("mini").pretrain_domain


def test_records_carry_per_query_correctness_and_a_refitted_head(tmp_path):
    from vitcf.base.uncertainty import unpack

    record = run("smoke", "full", {}, seed=0, results_dir=tmp_path, progress=False, forgetting_steps=(0, 3))
    metrics, base = record["metrics"], io.read_json(tmp_path / "baseline.json")
    for probe, scores in (("knn", metrics["knn"]), ("instance", metrics["instance"]["after"])):
        for k, accuracy in scores.items():
            hits = unpack(metrics["correct"][probe][str(k)])
            assert 100.0 * hits.mean() == pytest.approx(accuracy)
            before = unpack(base["correct"][probe][str(k)])
            assert before.shape == hits.shape  # the same queries, so every drop is a paired comparison
            assert 100.0 * before.mean() == pytest.approx(base[probe][str(k)])
    new = unpack(metrics["correct"]["new_domain"])
    assert 100.0 * new.mean() == pytest.approx(metrics["new_domain_accuracy"]) and new.size == 540  # smoke's digits test split
    head = metrics["linear_head"]
    assert 100.0 * unpack(metrics["correct"]["linear_head"]).mean() == pytest.approx(head["after"])
    assert 100.0 * unpack(metrics["correct"]["linear_head_refit"]).mean() == pytest.approx(head["refit"])
    for level in base["levels"].values():  # the reference levels carry theirs too
        assert 100.0 * unpack(level["correct"]["knn"]["20"]).mean() == pytest.approx(level["knn"]["20"])
    step0 = metrics["full_probe_over_steps"][0]
    assert step0["correct"]["knn"] == base["correct"]["knn"]  # step 0 is the baseline, query by query
    frame = records_frame([io.read_json(tmp_path / f"{record['run']}.json")], k=20)
    assert frame.loc[0, "linear_head_refit_drop"] == pytest.approx(head["baseline"] - head["refit"])


def test_records_keep_paths_inside_the_checkout_relative_to_it(tmp_path):
    from vitcf.engine import records

    inside = records.REPO / "vitcf" / "weights" / "mini.safetensors"
    assert records.portable(inside) == "vitcf/weights/mini.safetensors"
    assert records.located("vitcf/weights/mini.safetensors") == inside
    assert records.portable(tmp_path / "w.safetensors") == str((tmp_path / "w.safetensors").resolve())
    assert records.located(records.portable(tmp_path / "w.safetensors")) == (tmp_path / "w.safetensors").resolve()


def test_a_run_started_from_another_folder_writes_where_the_book_reads(tmp_path, monkeypatch):
    from vitcf.engine import records
    from vitcf.engine.study import plan_run

    monkeypatch.chdir(tmp_path)
    plan = plan_run("smoke", "linear", {}, 0)
    assert plan.path == records.REPO / "results" / "smoke" / "linear_seed0.json"
