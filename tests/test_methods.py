"""The fine-tuning methods: exact trainable sets, identity at initialisation, reversibility, errors."""

import copy
import re

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

import vitcf
from vitcf.model.methods.lora import SplitQKV
from vitcf.model.params import count_trainable, trainable_names

D, C, DEPTH = 32, 10, 12  # the micro backbone's width, our head width, depth
BLOCK = 12 * D * D + 13 * D  # qkv 3d^2+3d, proj d^2+d, fc1 4d^2+4d, fc2 4d^2+d, two norms 4d
HEAD = D * C + C
EVERYTHING = (3 * 4 * 4 * D + D) + 17 * D + D + DEPTH * BLOCK + 2 * D + HEAD  # patch conv, pos, cls, blocks, norm, head


def blocks_at(*indices):
    return rf"blocks\.({'|'.join(map(str, indices))})\..*"


# (method, hparams, regex of exactly the trainable names, trainable count from first principles)
CASES = [
    ("full", {}, r".*", EVERYTHING),
    ("top_k", {"k": 3}, blocks_at(9, 10, 11), 3 * BLOCK),
    ("top_k", {"k": 1}, blocks_at(11), BLOCK),
    ("top_k", {"k": 12}, blocks_at(*range(12)), 12 * BLOCK),
    ("linear", {}, r"(?!)", 0),
    ("lora", {"r": 4}, r"blocks\.\d+\.attn\.qkv\.(q|v)\.lora_(A|B)\.default\.weight", 12 * 2 * 4 * (D + D)),
    ("lora", {"r": 2, "target": "qkv"}, r"blocks\.\d+\.attn\.qkv\.lora_(A|B)\.default\.weight", 12 * 2 * (D + 3 * D)),
    ("block_expansion", {"p": 1}, blocks_at(12), BLOCK),
    ("block_expansion", {"p": 2}, blocks_at(6, 13), 2 * BLOCK),
    ("block_expansion", {"p": 3}, blocks_at(4, 9, 14), 3 * BLOCK),
    ("block_expansion", {"p": 4}, blocks_at(3, 7, 11, 15), 4 * BLOCK),
    ("block_expansion", {"p": 12}, blocks_at(*range(1, 24, 2)), 12 * BLOCK),
    # design-space variants: LoRA on every linear layer, block copies stacked on top, one surgical block
    ("lora", {"r": 2, "target": "all"},
     r"blocks\.\d+\.(attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.lora_(A|B)\.default\.weight",
     12 * 2 * ((D + 3 * D) + (D + D) + (D + 4 * D) + (4 * D + D))),
    ("block_expansion", {"p": 2, "placement": "top"}, blocks_at(12, 13), 2 * BLOCK),
    ("block_expansion", {"p": 5, "placement": "top"}, blocks_at(*range(12, 17)), 5 * BLOCK),
    ("surgical", {"block": 4}, blocks_at(4), BLOCK),
    # the positive control: re-initialised top blocks, then everything trains
    ("reinit", {"blocks": 6}, r".*", EVERYTHING),
]
IDS = [f"{m}-{'-'.join(f'{k}{v}' for k, v in h.items())}" for m, h, *_ in CASES]


def _names(model):
    return [n.removeprefix("base_model.model.") for n in trainable_names(model)]


def _step(model, images):
    """One SGD step on a random-label cross-entropy loss; returns the state before the step."""
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.zero_grad()
    logits = model(images)
    nn.functional.cross_entropy(logits, torch.arange(len(images)) % logits.shape[1]).backward()
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5).step()
    return before


def test_registry_holds_the_five_methods_surgical_fine_tuning_and_the_control():
    assert set(vitcf.METHODS) == {"full", "top_k", "linear", "lora", "block_expansion", "surgical", "reinit"}
    assert vitcf.make_method("reinit").family == "control"


def test_reinit_redraws_exactly_the_top_blocks_from_the_seed(micro):
    pretrained = micro()
    torch.manual_seed(3)
    model = vitcf.apply_method(copy.deepcopy(pretrained), "reinit", blocks=4)
    torch.manual_seed(3)
    again = vitcf.apply_method(copy.deepcopy(pretrained), "reinit", blocks=4)
    before, after = pretrained.state_dict(), model.state_dict()
    for name, value in after.items():
        top = any(name.startswith(f"blocks.{i}.") for i in range(8, 12))
        changed = not torch.equal(value, before[name])
        if name.endswith("weight") and "norm" not in name and top:
            assert changed, name
        if not top:
            assert not changed, name
        assert torch.equal(value, again.state_dict()[name])  # the run's seed decides the draw
    with pytest.raises(ValueError, match="blocks=13 exceeds the model's depth; allowed: 1..12"):
        vitcf.apply_method(micro(), "reinit", blocks=13)
    with pytest.raises(ValueError, match="blocks must be an integer >= 1"):
        vitcf.make_method("reinit", blocks=0)


@pytest.mark.parametrize(("method", "hparams", "pattern", "count"), CASES, ids=IDS)
def test_exact_trainable_set_and_count(micro, method, hparams, pattern, count):
    model = vitcf.apply_method(micro(), method, **hparams)
    names = _names(model)
    expected = [n for n in names if re.fullmatch(pattern, n) or n.startswith("head.")]
    assert names == expected and {"head.weight", "head.bias"} <= set(names)
    everything = [n.removeprefix("base_model.model.") for n, _ in model.named_parameters()]
    assert set(names) == {n for n in everything if re.fullmatch(pattern, n) or n.startswith("head.")}
    assert count_trainable(model) == count + (0 if method in ("full", "reinit") else HEAD)


@pytest.mark.parametrize(("method", "hparams", "pattern", "count"), CASES, ids=IDS)
def test_one_step_updates_only_trainable_tensors(micro, images, method, hparams, pattern, count):
    model = vitcf.apply_method(micro(), method, **hparams)
    before = _step(model, images)
    changed = set()
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and torch.isfinite(param.grad).all(), name
        else:
            assert param.grad is None, name
        if not torch.equal(param.detach(), before[name]):
            changed.add(name)
    trainable = set(trainable_names(model))
    assert changed <= trainable
    assert any("head." in n for n in changed)
    if method != "linear":  # something beyond the classifier learned
        assert any("head." not in n for n in changed)


@pytest.mark.parametrize("hparams", [{"p": p} for p in (1, 2, 3, 4, 6, 12)] + [{"p": 3, "placement": "top"}],
                         ids=lambda h: f"p{h['p']}{h.get('placement', '')}")
def test_block_expansion_is_an_exact_identity_at_init(micro, images, hparams):
    model = micro()
    reference = model(images)
    expanded = vitcf.apply_method(model, "block_expansion", **hparams)
    assert len(expanded.blocks) == DEPTH + hparams["p"]
    assert torch.equal(expanded(images), reference)


@pytest.mark.parametrize("target", ["qv", "qkv", "all"])
def test_lora_leaves_outputs_unchanged_at_init(micro, images, target):
    model = micro()
    reference = model(images)
    adapted = vitcf.apply_method(model, "lora", r=8, target=target)
    assert torch.equal(adapted(images), reference)  # B = 0 and the split projections are exact copies


def test_split_qkv_copies_weights_exactly(micro, images):
    fused = micro().blocks[0].attn.qkv
    split = SplitQKV(fused)
    x = torch.randn(3, 17, D)
    assert torch.equal(split(x), fused(x))
    refused = split.fuse()
    assert torch.equal(refused.weight, fused.weight) and torch.equal(refused.bias, fused.bias)


@pytest.fixture(scope="module")
def vit_b():
    """The real ViT-B/16 architecture with random weights (no download), in eval mode."""
    torch.manual_seed(0)
    return vitcf.create_backbone("vit_base_patch16_224.dino", num_classes=100).eval()


@pytest.fixture(scope="module")
def vit_b_images():
    return torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def vit_b_reference(vit_b, vit_b_images):
    with torch.no_grad():
        return vit_b(vit_b_images)


@pytest.mark.parametrize("p", [1, 2, 3, 4])
def test_block_expansion_identity_on_vit_b16(vit_b, vit_b_images, vit_b_reference, p):
    model = vitcf.apply_method(copy.deepcopy(vit_b), "block_expansion", p=p)
    with torch.no_grad():
        assert torch.equal(model(vit_b_images), vit_b_reference)
    assert count_trainable(model) == p * 7_087_872 + 76_900


def test_lora_unchanged_at_init_on_vit_b16(vit_b, vit_b_images, vit_b_reference):
    model = vitcf.apply_method(copy.deepcopy(vit_b), "lora", r=8)
    with torch.no_grad():
        assert torch.equal(model(vit_b_images), vit_b_reference)


# --- reversibility -------------------------------------------------------------------------------

def _perturb(params):
    """Stand in for training: move every given parameter."""
    with torch.no_grad():
        for p in params:
            p.add_(torch.randn_like(p) * 0.1)


def _backbone_state(model):
    return {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}


@pytest.mark.parametrize("target", ["qv", "qkv", "all"])
def test_lora_merge_and_revert(micro, images, target):
    original = micro()
    pretrained = {k: v.clone() for k, v in _backbone_state(original).items()}
    method = vitcf.make_method("lora", r=4, target=target)
    model = method.apply(original)
    _perturb(p for p in model.parameters() if p.requires_grad)
    adapted = model(images)
    assert not torch.allclose(adapted, micro()(images))

    merged = method.merge(copy.deepcopy(model))
    assert type(merged) is VisionTransformer
    assert all(type(b.attn.qkv) is nn.Linear for b in merged.blocks)
    torch.testing.assert_close(merged(images), adapted, rtol=0, atol=1e-5)

    head = model.base_model.model.head.weight.detach().clone()
    reverted = method.revert(model)
    assert type(reverted) is VisionTransformer
    state = _backbone_state(reverted)
    assert state.keys() == pretrained.keys()
    assert all(torch.equal(state[k], pretrained[k]) for k in pretrained)
    assert torch.equal(reverted.head.weight, head)  # the trained classifier stays


@pytest.mark.parametrize("placement", ["spread", "top"])
def test_block_expansion_revert_restores_the_pretrained_network(micro, images, placement):
    original = micro()
    reference_features = vitcf.cls_features(original, images)
    pretrained = {k: v.clone() for k, v in _backbone_state(original).items()}
    method = vitcf.make_method("block_expansion", p=3, placement=placement)
    model = method.apply(original)
    _perturb(p for p in model.parameters() if p.requires_grad)
    assert not torch.equal(vitcf.cls_features(model, images), reference_features)
    reverted = method.revert(model)
    assert len(reverted.blocks) == DEPTH
    state = _backbone_state(reverted)
    assert all(torch.equal(state[k], pretrained[k]) for k in pretrained)
    assert torch.equal(vitcf.cls_features(reverted, images), reference_features)


@pytest.mark.parametrize(("method", "hparams"), [("full", {}), ("top_k", {"k": 3}), ("linear", {})])
def test_standard_methods_cannot_be_reverted(micro, method, hparams):
    config = vitcf.make_method(method, **hparams)
    with pytest.raises(ValueError, match="reversible methods: lora, block_expansion"):
        config.revert(config.apply(micro()))


def test_block_expansion_revert_checks_depth(micro):
    with pytest.raises(ValueError, match="p=12"):
        vitcf.make_method("block_expansion", p=12).revert(micro())


# --- determinism and errors ----------------------------------------------------------------------

def test_lora_init_is_seeded(micro):
    def adapters(seed):
        model = micro()
        torch.manual_seed(seed)
        model = vitcf.apply_method(model, "lora", r=4)
        return [p.detach().clone() for n, p in model.named_parameters() if "lora_A" in n]

    a, b, c = adapters(1), adapters(1), adapters(2)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])


@pytest.mark.parametrize(
    ("method", "hparams", "message"),
    [
        ("lorra", {}, r"unknown method 'lorra'; allowed: .*lora.*block_expansion"),
        ("lora", {"rank": 8}, r"method 'lora' has no hyperparameter rank; allowed: r, alpha, dropout, target"),
        ("linear", {"k": 3}, r"method 'linear' has no hyperparameter k; allowed: none"),
        ("top_k", {"k": 0}, r"top_k: k must be an integer >= 1, got 0"),
        ("top_k", {"k": "3"}, r"top_k: k must be an integer >= 1, got '3'"),
        ("top_k", {"k": 13}, r"top_k: k=13 exceeds the model's depth; allowed: 1..12"),
        ("lora", {"r": 0}, r"lora: r must be an integer >= 1, got 0"),
        ("lora", {"r": 2.5}, r"lora: r must be an integer >= 1, got 2.5"),
        ("lora", {"alpha": 0}, r"lora: alpha must be a finite number > 0.0, got 0"),
        ("lora", {"dropout": 1.0}, r"lora: dropout must be a number in \[0.0, 1.0\), got 1.0"),
        ("lora", {"target": "qkvo"}, r"lora: target must be one of qv, qkv, all, got 'qkvo'"),
        ("block_expansion", {"p": 5}, r"p=5 does not divide the model's depth 12.*allowed: 1, 2, 3, 4, 6, 12"),
        ("block_expansion", {"p": -1}, r"block_expansion: p must be an integer >= 1, got -1"),
        ("block_expansion", {"placement": "middle"}, r"placement must be one of spread, top, got 'middle'"),
        ("block_expansion", {"p": 13, "placement": "top"}, r"p=13 exceeds the model's depth; allowed: 1..12"),
        ("surgical", {"block": 12}, r"surgical: block=12 is not a block of this model; allowed: 0..11"),
        ("surgical", {"block": -1}, r"surgical: block must be an integer >= 0, got -1"),
    ],
)
def test_bad_input_raises_a_clear_error(micro, method, hparams, message):
    model = micro()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=message):
        vitcf.apply_method(model, method, **hparams)
    # Errors surface before the model is touched.
    assert model.state_dict().keys() == before.keys()
    assert all(p.requires_grad for p in model.parameters())


def test_every_hyperparameter_states_its_range_or_the_method_is_refused():
    from dataclasses import dataclass

    from vitcf.model.methods.base import METHODS, Method, register

    @dataclass(frozen=True)
    class Unstated(Method):
        name = "unstated"
        family = "standard"
        width: int = 4

    with pytest.raises(TypeError, match="method 'unstated': hyperparameters width state no range"):
        register(Unstated)
    assert "unstated" not in METHODS


@pytest.mark.parametrize("method", ["full", "top_k", "linear", "lora", "block_expansion"])
def test_a_headless_backbone_is_rejected(micro, method):
    with pytest.raises(ValueError, match="num_classes > 0"):
        vitcf.apply_method(micro(num_classes=0), method)


@pytest.mark.parametrize(
    ("method", "hparams", "expected"),
    [("top_k", {"k": 3}, ["frozen"] * 9 + ["trained"] * 3),
     ("lora", {"r": 4}, ["adapted"] * 12),
     ("block_expansion", {"p": 2}, ["frozen"] * 6 + ["trained"] + ["frozen"] * 6 + ["trained"]),
     ("linear", {}, ["frozen"] * 12)],
)
def test_methods_figure_shows_the_real_trainable_sets(method, hparams, expected):
    from vitcf.book.diagrams import _block_states

    assert _block_states(method, hparams, "micro") == expected
