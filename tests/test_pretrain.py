"""DINO pre-training: the method's invariants, determinism, and the weights + card it ships."""

import json

import pytest
import torch

import vitcf
from vitcf import backbones
from vitcf.checkpoints import sha256
from vitcf.cli import main
from vitcf.data import load_dataset
from vitcf.pretrain import (
    DINO,
    QUALITY_BAR,
    default_output,
    get_pretrain_config,
    multi_crop,
    pretrain,
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
     ("mini", {"warmup_fraction": 1.5}, r"warmup_fraction must be in \[0, 1\), got 1.5")],
)
def test_bad_pretraining_settings(preset, overrides, message):
    with pytest.raises(ValueError, match=message):
        get_pretrain_config(preset, **overrides)


def test_cli_pretrain_rejects_bad_output_and_preset(tmp_path, capsys):
    assert main(["pretrain", "--preset", "smoke", "--out", str(tmp_path / "w.pth"), "--quiet"]) == 2
    assert "must be a .safetensors file" in capsys.readouterr().err
    assert main(["pretrain", "--preset", "tiny", "--quiet"]) == 2
    assert "allowed: mini, smoke" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
