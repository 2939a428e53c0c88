"""DINO pre-training: the method's invariants, determinism, and the weights + card it ships."""

import json

import pytest
import torch

import vitcf
from vitcf.model import backbones
from vitcf.model.checkpoints import sha256
from vitcf.engine.cli import main
from vitcf.engine.sources import load_dataset
from vitcf.engine.pretrain import (
    DINO,
    QUALITY_BAR,
    checkpoint_path,
    default_output,
    get_pretrain_config,
    multi_crop,
    pretrain,
    quality_verdict,
    run_pretraining,
)

CPU = torch.device("cpu")


@pytest.fixture
def tiny():
    return get_pretrain_config("smoke", epochs=1, limit=64)


def test_teacher_starts_as_the_student_and_follows_by_ema(micro, tiny):
    model = DINO(micro(num_classes=0), tiny)
    assert not any(p.requires_grad for p in [*model.teacher.parameters(), *model.teacher_head.parameters()])
    for s, t in zip(model.student.state_dict().values(), model.teacher.state_dict().values()):
        assert torch.equal(s, t)
    before = model.teacher.blocks[0].attn.qkv.weight.clone()
    with torch.no_grad():
        model.student.blocks[0].attn.qkv.weight.add_(1.0)
    model.update_teacher(0.9)
    expected = 0.9 * before + 0.1 * model.student.blocks[0].attn.qkv.weight
    torch.testing.assert_close(model.teacher.blocks[0].attn.qkv.weight, expected)


def test_multi_crop_views(tiny):
    spec = vitcf.BACKBONES["micro"]
    images = load_dataset("fashion_mnist", "test").images[:5]
    views = multi_crop(images, tiny, spec, torch.Generator().manual_seed(0))
    assert [tuple(v.shape) for v in views] == [(5, 3, 16, 16)] * 2 + [(5, 3, 8, 8)] * tiny.local_views
    again = multi_crop(images, tiny, spec, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(views, again))
    assert not torch.equal(views[0], views[1])  # two different global crops


def test_pretraining_learns_and_is_deterministic(tiny):
    a = pretrain(tiny, device=CPU, progress=False)
    b = pretrain(tiny, device=CPU, progress=False)
    assert all(torch.isfinite(torch.tensor(a.losses)))
    assert a.losses == b.losses
    assert all(torch.equal(x, y) for x, y in zip(a.backbone.state_dict().values(), b.backbone.state_dict().values()))
    torch.manual_seed(tiny.seed)
    start = vitcf.create_backbone("micro", num_classes=0)
    assert not torch.equal(a.backbone.blocks[0].attn.qkv.weight, start.blocks[0].attn.qkv.weight)
    assert a.images == 64 and a.images_per_second > 0


def test_run_pretraining_writes_weights_and_card(tmp_path):
    config = get_pretrain_config("smoke")
    card = run_pretraining(config, out=tmp_path / "micro.safetensors", device=CPU, progress=False)
    weights = tmp_path / "micro.safetensors"
    assert json.loads((tmp_path / "micro.json").read_text()) == json.loads(json.dumps(card))
    assert card["weights"]["sha256"] == sha256(weights)
    assert card["data"] == {"dataset": "fashion_mnist", "split": "train", "images": 128, "labels_used": False}
    assert card["input"]["size"] == 16 and card["input"]["channels"] == 3
    assert set(card["knn"]["pretrained"]) == set(card["knn"]["random_init"]) == {10, 20, 100, 200}
    assert card["quality_bar"]["min_accuracy"] == QUALITY_BAR and card["quality_bar"]["met"] is False
    assert set(card["knn"]["raw_pixels"]) == {10, 20, 100, 200}
    assert [e["epoch"] for e in card["learning_curve"]["epochs"]] == [1, 2]
    assert card["wall_seconds"] >= card["train_seconds"] > 0 and card["resumed_from_epoch"] == 0
    assert len(card["loss_per_epoch"]) == config.epochs
    loaded = vitcf.create_backbone("micro", checkpoint=weights)
    assert loaded.pos_embed.shape == (1, 17, 32)


def test_mini_preset_and_its_shipped_location():
    mini = get_pretrain_config("mini")
    assert (mini.backbone, mini.dataset, mini.limit, mini.knn_bank) == ("mini", "fashion_mnist", None, None)
    assert default_output(mini) == backbones.WEIGHTS_DIR / "mini.safetensors"
    assert default_output(get_pretrain_config("smoke")).name == "micro.safetensors"


@pytest.mark.parametrize(
    ("preset", "overrides", "message"),
    [("huge", {}, "unknown pre-training preset 'huge'; allowed: mini, smoke"),
     ("mini", {"epoch": 3}, "unknown setting epoch"),
     ("mini", {"epochs": 0}, "epochs must be an integer >= 1, got 0"),
     ("mini", {"warmup_fraction": 1.5}, r"warmup_fraction must be a number in \[0.0, 1.0\), got 1.5"),
     ("mini", {"base_lr": float("nan")}, r"base_lr must be a number in \(0.0, 1.0\], got nan"),
     ("mini", {"base_lr": 1e308}, r"base_lr must be a number in \(0.0, 1.0\], got 1e\+308"),
     ("mini", {"base_lr": 0.0}, r"base_lr must be a number in \(0.0, 1.0\], got 0.0"),
     ("mini", {"teacher_temp": float("inf")}, r"teacher_temp must be a number in \(0.0, 10.0\], got inf"),
     ("mini", {"teacher_momentum": (0.99, 1.5)}, r"teacher_momentum must be a number in \[0.0, 1.0\], got 1.5"),
     ("mini", {"global_scale": (0.4,)}, r"global_scale must be a pair \[first, last\], got \(0.4,\)"),
     ("mini", {"jitter": "a lot"}, "jitter must be a number in"),
     ("mini", {"center_momentum": 1.0}, r"center_momentum must be a number in \[0.0, 1.0\), got 1.0")],
)
def test_bad_pretraining_settings(preset, overrides, message):
    with pytest.raises(ValueError, match=message):
        get_pretrain_config(preset, **overrides)


def test_a_diverging_pretraining_stops_naming_the_epoch_and_rate_and_writes_nothing(tmp_path, monkeypatch, capsys):
    import vitcf.engine.pretrain as module

    real = module.DINOLoss.forward
    monkeypatch.setattr(module.DINOLoss, "forward", lambda self, *a, **kw: real(self, *a, **kw) * float("nan"))
    out = tmp_path / "w.safetensors"
    code = main(["pretrain", "--preset", "smoke", "--out", str(out), "--quiet", "--set", "epochs=1"])
    err = capsys.readouterr().err
    assert code == 2 and "the DINO loss stopped being finite in epoch 1 (mean nan) at base_lr" in err
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_cli_pretrain_rejects_bad_output_and_preset(tmp_path, capsys):
    assert main(["pretrain", "--preset", "smoke", "--out", str(tmp_path / "w.pth"), "--quiet"]) == 2
    assert "must be a .safetensors file" in capsys.readouterr().err
    assert main(["pretrain", "--preset", "tiny", "--quiet"]) == 2
    assert "allowed: mini, smoke" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# --- resumable pre-training ----------------------------------------------------------------------

# The real command in a child process, slowed after each checkpoint so the test can kill it there.
SLOW_CHILD = """
import sys, time
import vitcf.engine.pretrain as p
save = p.save_checkpoint
def slow(path, state):
    save(path, state)
    time.sleep(60)
p.save_checkpoint = slow
from vitcf.engine.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_killed_pretraining_resumes_to_the_same_weights(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    args = ["pretrain", "--preset", "smoke", "--epochs", "3", "--quiet"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    whole = tmp_path / "whole" / "micro.safetensors"
    assert main([*args, "--out", str(whole)]) == 0
    killed = tmp_path / "killed" / "micro.safetensors"
    resume = checkpoint_path(killed)
    child = subprocess.Popen([sys.executable, "-c", SLOW_CHILD, *args, "--out", str(killed)], env=env)
    deadline = time.monotonic() + 120
    while not resume.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL and resume.exists() and not killed.exists()
    assert torch.load(resume, weights_only=True)["epoch"] == 1
    assert main([*args, "--out", str(killed)]) == 0  # the same command: resumes after epoch 1
    card = json.loads(killed.with_suffix(".json").read_text())
    assert card["resumed_from_epoch"] == 1 and not resume.exists()
    assert sha256(killed) == sha256(whole)
    first = json.loads(whole.with_suffix(".json").read_text())
    assert card["loss_per_epoch"] == first["loss_per_epoch"] and len(card["learning_curve"]["epochs"]) == 3


def test_a_checkpoint_with_other_settings_is_refused(tmp_path, capsys):
    out = tmp_path / "micro.safetensors"
    config = get_pretrain_config("smoke", epochs=1)
    pretrain(config, device=CPU, progress=False, checkpoint=checkpoint_path(out))
    before = checkpoint_path(out).read_bytes()
    code = main(["pretrain", "--preset", "smoke", "--epochs", "2", "--set", "base_lr=0.01", "--quiet",
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "was made with other settings" in err
    assert "config.epochs 1 in the checkpoint, 2 now" in err and "config.base_lr 0.0005 in the checkpoint, 0.01 now" in err
    assert checkpoint_path(out).read_bytes() == before and not out.exists()


def test_the_card_reports_pixels_curve_and_verdict():
    verdict = quality_verdict(86.0, 65.0, full_protocol=True)
    assert verdict["met"] and not verdict["stretch_met"] and verdict["shippable"]
    fallback = quality_verdict(81.0, 65.0, full_protocol=True)
    assert not fallback["met"] and fallback["fallback_met"] and fallback["shippable"]
    assert not quality_verdict(79.0, 65.0, full_protocol=True)["shippable"]
    assert not quality_verdict(90.0, 65.0, full_protocol=False)["shippable"]  # a subset protocol never counts


def test_set_parses_typed_overrides(capsys):
    from vitcf.engine.cli import parse_settings

    assert parse_settings(["base_lr=0.001", "teacher_momentum=[0.99,1.0]", "local-views=4", "dataset=x"]) == [
        ("base_lr", 0.001), ("teacher_momentum", (0.99, 1.0)), ("local_views", 4), ("dataset", "x")]
    assert main(["pretrain", "--preset", "smoke", "--set", "lr", "--quiet"]) == 2
    assert "--set takes KEY=VALUE, got 'lr'" in capsys.readouterr().err
