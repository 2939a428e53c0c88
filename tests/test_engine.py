"""The study engine: presets, schedule, training config, records, run planning and the CLI."""

import json
import math

import pytest
from huggingface_hub import constants

import vitcf
from vitcf.model import backbones
from vitcf.base import io
from vitcf.engine import naming, records
from vitcf.model.checkpoints import save_state_dict
from vitcf.engine.cli import main
from vitcf.base.paper import PAPER_ROWS
from vitcf.engine.presets import PRESETS, get_preset
from vitcf.engine.study import plan_run
from vitcf.engine.train import TrainConfig, lr_factor


def test_schedule_warms_up_linearly_then_decays_by_cosine():
    total, warmup = 100, 10
    factors = [lr_factor(s, total, warmup) for s in range(total)]
    assert factors[:warmup] == pytest.approx([(s + 1) / warmup for s in range(warmup)])
    assert factors[warmup] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[warmup:], factors[warmup + 1:]))
    assert factors[55] == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert lr_factor(total, total, warmup) == pytest.approx(0.0)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_covers_every_paper_row(name):
    preset = PRESETS[name]
    assert [(g.method, g.hparams) for g in preset.grid] == [(r.method, r.hparams) for r in PAPER_ROWS]
    for row in PAPER_ROWS:
        lr, warmup = preset.schedule_for(row.method, row.hparams)
        assert lr == row.lr
        assert warmup == max(1, round(row.warmup * preset.steps / 10_000))


def test_paper_preset_is_the_papers_protocol():
    paper = get_preset("paper")
    assert (paper.steps, paper.batch_size, paper.img_size) == (10_000, 128, 224)
    assert paper.schedule_for("linear", {}) == (0.005, 100)
    assert paper.schedule_for("lora", {"r": 8}) == (0.005, 500)
    assert paper.schedule_for("lora", {"r": 4}) == (0.05, 500)
    assert paper.schedule_for("lora", {"r": 32}) == (paper.default_lr, 500)  # off the grid
    assert paper.finetune_mean == (0.5, 0.5, 0.5) and paper.knn_ks == (10, 20, 100, 200)


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset 'big'; allowed: paper, mini, smoke"):
        get_preset("big")


@pytest.mark.parametrize(
    ("change", "message"),
    [({"steps": 0}, "steps must be an integer >= 1, got 0"),
     ({"lr": -1.0}, r"lr must be a number in \(0, 10\], got -1.0"),
     ({"lr": 1e308}, r"lr must be a number in \(0, 10\], got 1e\+308"),
     ({"lr": float("nan")}, r"lr must be a number in \(0, 10\], got nan"),
     ({"warmup_steps": 20}, r"warmup_steps must be an integer in \[0, 10\], got 20")],
)
def test_train_config_validation(change, message):
    base = dict(steps=10, batch_size=4, lr=0.1, warmup_steps=1, eval_every=5, img_size=16,
                mean=(0.5,), std=(0.5,), in_chans=1)
    with pytest.raises(ValueError, match=message):
        TrainConfig(**(base | change))


def test_write_json_is_atomic(tmp_path, monkeypatch):
    path = io.write_json(tmp_path / "a.json", {"x": 1})
    assert json.loads(path.read_text()) == {"x": 1}

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(io.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        io.write_json(tmp_path / "a.json", {"x": 2})
    assert json.loads(path.read_text()) == {"x": 1}  # the old record is intact
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # and no temp file is left


def test_run_names_and_listing(tmp_path):
    assert naming.run_name("lora", {"r": 8}, 0) == "lora_r8_seed0"
    assert naming.run_name("full", {}, 2) == "full_seed2"
    io.write_json(tmp_path / "baseline.json", {"knn": {}})
    io.write_json(tmp_path / "b.json", {"run": "b"})
    io.write_json(tmp_path / "a.json", {"run": "a"})
    io.write_json(tmp_path / "c.error.json", {"run": "c", "error": "boom"})
    # Neither baseline.json nor a failed run's error file is a run record; these two lack every field
    # the book reads, so they are listed as invalid, by name, and never returned as records.
    valid, invalid = records.scan(tmp_path)
    assert valid == [] == records.read_records(tmp_path)
    assert [p.name for p, _ in invalid] == ["a.json", "b.json"]
    assert invalid[0][1] == "schema version None, this code reads version 1"


@pytest.fixture
def mini_weights(tmp_path):
    """A stand-in mini backbone file (random weights): planning only needs it to exist."""
    return save_state_dict(vitcf.create_backbone("mini"), tmp_path / "mini.safetensors")


def test_plan_resolves_the_grid(tmp_path, mini_weights):
    plan = plan_run("mini", "lora", {"r": 16}, seed=2, results_dir=tmp_path, checkpoint=mini_weights)
    assert plan.train.lr == 0.05 and plan.train.steps == 300 and plan.train.in_chans == 1
    assert plan.path.parent == tmp_path and plan.path.name.startswith("lora_r16_seed2_")
    assert plan.method.alpha == 16
    assert plan.weights["source"] == "checkpoint" and len(plan.weights["sha256"]) == 64
    override = plan_run("mini", "lora", {"r": 16}, seed=2, results_dir=tmp_path, steps=20, lr=0.1,
                        checkpoint=mini_weights)
    assert override.train.steps == 20 and override.train.lr == 0.1
    assert override.path != plan.path and override.path.name.startswith("lora_r16_seed2_")
    assert plan_run("smoke", "full", {}, 3, results_dir=tmp_path).path == tmp_path / "full_seed3.json"


def test_plan_fails_before_compute_without_backbone_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(backbones, "WEIGHTS_DIR", tmp_path / "no-weights")
    with pytest.raises(vitcf.WeightsUnavailableError, match="vitcf pretrain --preset mini"):
        plan_run("mini", "full", {}, 0, results_dir=tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        plan_run("mini", "full", {}, 0, results_dir=tmp_path / "out", checkpoint=tmp_path / "missing.safetensors")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [(("tiny", "full", {}, 0), "unknown preset 'tiny'"),
     (("smoke", "lorra", {}, 0), "unknown method 'lorra'"),
     (("smoke", "lora", {"p": 2}, 0), "method 'lora' has no hyperparameter p"),
     (("smoke", "block_expansion", {"p": 0}, 0), "p must be an integer >= 1, got 0"),
     (("smoke", "full", {}, -1), r"seed must be an integer in \[0, 4294967295\], got -1"),
     (("smoke", "full", {}, 10**20), r"seed must be an integer in \[0, 4294967295\], got 100000000000000000000"),
     (("smoke", "lora", {"r": 100_000_000}, 0), r"r must be at most 32 \(the smaller side of the adapted layers for target .qv.\), got 100000000")],
)
def test_plan_rejects_bad_arguments_and_writes_nothing(tmp_path, args, message):
    with pytest.raises(ValueError, match=message):
        plan_run(*args, results_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_plan_rejects_bad_options(tmp_path):
    with pytest.raises(ValueError, match=r"forgetting steps must be integers in \[0, 6\], got \[7\]"):
        plan_run("smoke", "full", {}, 0, results_dir=tmp_path, forgetting_steps=(0, 7))
    with pytest.raises(ValueError, match="steps must be an integer >= 1, got 0"):
        plan_run("smoke", "full", {}, 0, results_dir=tmp_path, steps=0)
    with pytest.raises(ValueError, match="CUDA is not available"):
        plan_run("smoke", "full", {}, 0, results_dir=tmp_path, device="cuda")
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        plan_run("smoke", "full", {}, 0, results_dir=tmp_path, device="gpu")


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--preset", "smoke", "--method", "linear", "--k", "3"], "method 'linear' has no hyperparameter k"),
     (["--preset", "smoke", "--method", "block_expansion", "--p", "5"], "p=5 does not divide"),
     (["--preset", "nope", "--method", "full"], "unknown preset 'nope'; allowed: paper, mini, smoke")],
)
def test_cli_run_bad_arguments(tmp_path, capsys, argv, message):
    out = tmp_path / "results"
    code = main(["run", *argv, "--results-dir", str(out), "--quiet"])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_cli_knows_every_method_hyperparameter():
    import dataclasses

    from vitcf.engine.cli import HPARAM_OPTIONS
    from vitcf.model.methods import METHODS

    fields = {f.name for cls in METHODS.values() for f in dataclasses.fields(cls)}
    assert fields == set(HPARAM_OPTIONS)


def test_paper_plan_checks_imagenet_and_weights_before_compute(tmp_path, monkeypatch):
    monkeypatch.delenv("VITCF_IMAGENET", raising=False)
    with pytest.raises(ValueError, match="VITCF_IMAGENET"):
        plan_run("paper", "full", {}, 0, results_dir=tmp_path / "out")
    # A well-formed folder gets past that check; offline, the DINO weights then stop the run.
    from PIL import Image

    for split in ("train", "val"):
        (tmp_path / "in" / split / "n01440764").mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "in" / split / "n01440764" / "a.png")
    monkeypatch.setenv("VITCF_IMAGENET", str(tmp_path / "in"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(vitcf.WeightsUnavailableError, match="checkpoint=PATH"):
        plan_run("paper", "full", {}, 0, results_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_forgetting_probes_default_to_the_presets(tmp_path):
    assert plan_run("smoke", "full", {}, 0, results_dir=tmp_path).forgetting_steps == (0, 3, 6)
    assert plan_run("smoke", "full", {}, 0, results_dir=tmp_path, forgetting_steps=()).forgetting_steps == ()
    assert plan_run("smoke", "full", {}, 0, results_dir=tmp_path, forgetting_steps=(5, 1, 5)).forgetting_steps == (1, 5)
    # a shortened schedule keeps the preset's probes that still fall inside it
    assert plan_run("smoke", "full", {}, 0, results_dir=tmp_path, steps=4).forgetting_steps == (0, 3)
    mini = get_preset("mini")
    assert {0, 10, mini.steps} <= set(mini.forgetting_steps)  # the abstract's 10 iterations, from start to end
