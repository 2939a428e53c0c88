import argparse
import dataclasses

import pytest
import timm
import torch
from huggingface_hub import constants

import vitcf
from vitcf.model import backbones
from vitcf.base import io
from vitcf.model.checkpoints import CheckpointError, save_state_dict


@pytest.mark.parametrize("name", ["micro", "mini"])
def test_small_family_has_twelve_blocks_and_cls_features(name):
    spec = vitcf.BACKBONES[name]
    model = vitcf.create_backbone(name, num_classes=0).eval()
    assert len(model.blocks) == 12
    x = torch.randn(2, spec.in_chans, spec.img_size, spec.img_size)
    feats = vitcf.cls_features(model, x)
    assert feats.shape == (2, spec.arch["embed_dim"])
    # CLS token after the final LayerNorm, nothing else.
    torch.testing.assert_close(feats, model.norm(_blocks(model, x))[:, 0])
    # Without a head the model's output is exactly that feature.
    torch.testing.assert_close(model(x), feats)


def _blocks(model, x):
    return model.blocks(model.norm_pre(model._pos_embed(model.patch_embed(x))))


def test_dino_architecture_matches_timm_registry():
    with torch.device("meta"):
        ours = vitcf.create_backbone("vit_base_patch16_224.dino", num_classes=0)
        ref = timm.create_model("vit_base_patch16_224.dino", pretrained=False)
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}  # noqa: E731
    assert shapes(ours) == shapes(ref)
    assert sum(p.numel() for p in ours.parameters()) == 85_798_656


def test_head_width_follows_num_classes(micro):
    assert micro(num_classes=7).get_classifier().out_features == 7


@pytest.mark.parametrize("bad", [-1, 2.0, True, "10"])
def test_bad_num_classes(bad):
    with pytest.raises(ValueError, match="num_classes"):
        vitcf.create_backbone("micro", num_classes=bad)


def test_unknown_backbone_lists_allowed():
    with pytest.raises(ValueError, match=r"unknown backbone 'vit_huge'.*micro"):
        vitcf.create_backbone("vit_huge")


def test_random_init_is_seeded(micro):
    a, b, c = micro(seed=3), micro(seed=3), micro(seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.blocks[0].attn.qkv.weight, c.blocks[0].attn.qkv.weight)


# --- pre-trained weights -------------------------------------------------------------------------

def test_dino_offline_fails_fast_with_instructions(monkeypatch, tmp_path):
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(vitcf.WeightsUnavailableError) as err:
        vitcf.create_backbone("vit_base_patch16_224.dino", pretrained=True, num_classes=100)
    message = str(err.value)
    assert "timm/vit_base_patch16_224.dino" in message and "127.0.0.1:9" in message
    assert "checkpoint=PATH" in message and str(tmp_path) in message


def test_dino_with_hub_offline_flag(monkeypatch, tmp_path):
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(vitcf.WeightsUnavailableError, match="HF_HUB_OFFLINE"):
        vitcf.create_backbone("vit_base_patch16_224.dino", pretrained=True)


def test_warm_hub_cache_is_used_without_network(monkeypatch, tmp_path, micro):
    """A backbone whose hub file sits in the cache loads from it (same code path as DINO's)."""
    spec = dataclasses.replace(vitcf.BACKBONES["micro"], hub_id="vitcf-test/micro")
    monkeypatch.setitem(vitcf.BACKBONES, "micro-hub", spec)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    source = micro(num_classes=0, seed=5)
    snapshot = tmp_path / "models--vitcf-test--micro" / "snapshots" / "abc123"
    save_state_dict(source, snapshot / backbones.HUB_FILENAME)
    (tmp_path / "models--vitcf-test--micro" / "refs").mkdir()
    (tmp_path / "models--vitcf-test--micro" / "refs" / "main").write_text("abc123")
    loaded = vitcf.create_backbone("micro-hub", pretrained=True, num_classes=10)
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_shipped_weights_missing_says_how_to_regenerate(monkeypatch, tmp_path):
    monkeypatch.setattr(backbones, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(vitcf.WeightsUnavailableError, match="vitcf pretrain --preset mini"):
        vitcf.create_backbone("mini", pretrained=True)


def _ship(folder, seed=3):
    """A stand-in mini backbone with the card that `vitcf pretrain` writes beside it (only the sha256 matters)."""
    from vitcf.model.checkpoints import save_state_dict, sha256

    torch.manual_seed(seed)
    source = vitcf.create_backbone("mini")
    weights = save_state_dict(source, folder / "mini.safetensors")
    io.write_json(folder / "mini.json", {"weights": {"file": weights.name, "sha256": sha256(weights)}})
    return source, weights


def test_shipped_weights_can_live_elsewhere(monkeypatch, tmp_path):
    source, _ = _ship(tmp_path)
    monkeypatch.setenv(backbones.WEIGHTS_ENV, str(tmp_path))
    assert backbones.pretrained_weights_path("mini") == tmp_path / "mini.safetensors"
    loaded = vitcf.create_backbone("mini", pretrained=True)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in source.state_dict().items())


def test_shipped_weights_that_differ_from_their_card_are_refused(monkeypatch, tmp_path):
    from vitcf.model.checkpoints import save_state_dict, sha256

    _, weights = _ship(tmp_path)
    expected = sha256(weights)
    torch.manual_seed(4)
    save_state_dict(vitcf.create_backbone("mini"), weights)  # another backbone under the shipped name
    monkeypatch.setenv(backbones.WEIGHTS_ENV, str(tmp_path))
    with pytest.raises(backbones.WeightsMismatchError) as err:
        vitcf.create_backbone("mini", pretrained=True)
    assert f"(sha256 {sha256(weights)})" in str(err.value) and f"(sha256 {expected})" in str(err.value)
    assert str(weights) in str(err.value) and str(tmp_path / "mini.json") in str(err.value)
    (tmp_path / "mini.json").unlink()
    with pytest.raises(vitcf.WeightsUnavailableError, match="have no provenance card"):
        vitcf.create_backbone("mini", pretrained=True)


def test_backbone_without_weights_refuses_pretrained():
    with pytest.raises(vitcf.WeightsUnavailableError, match="'micro' has no pre-trained weights"):
        vitcf.create_backbone("micro", pretrained=True)


# --- local checkpoints ---------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_checkpoint_round_trip_ignores_head(tmp_path, micro, suffix):
    source = micro(num_classes=5, seed=1)
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        save_state_dict(source, path)
    else:
        torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    torch.manual_seed(2)
    loaded = vitcf.create_backbone("micro", num_classes=10, checkpoint=path)
    assert torch.equal(loaded.pos_embed, source.pos_embed)
    assert torch.equal(loaded.blocks[11].mlp.fc2.weight, source.blocks[11].mlp.fc2.weight)
    assert loaded.head.out_features == 10  # the classifier is always fresh


def test_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        vitcf.create_backbone("micro", checkpoint=tmp_path / "nope.safetensors")


def test_truncated_checkpoint(tmp_path, micro):
    path = save_state_dict(micro(), tmp_path / "w.safetensors")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        vitcf.create_backbone("micro", checkpoint=path)


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"weights": argparse.Namespace(run="arbitrary code")}, path)  # not an allowed global
    with pytest.raises(CheckpointError, match="evil.pth"):
        vitcf.create_backbone("micro", checkpoint=path)


def test_mismatched_checkpoint_names_keys(tmp_path, micro):
    state = micro().state_dict()
    del state["blocks.3.norm1.weight"]
    state["blocks.12.norm1.weight"] = torch.ones(32)
    state["pos_embed"] = torch.zeros(1, 5, 32)
    path = tmp_path / "w.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        vitcf.create_backbone("micro", checkpoint=path)
    message = str(err.value)
    assert "missing keys: blocks.3.norm1.weight" in message
    assert "unexpected keys: blocks.12.norm1.weight" in message
    assert "pos_embed (file (1, 5, 32), model (1, 17, 32))" in message
