"""Evaluation: the weighted k-NN against a naive reference, features, accuracy, forgetting, linear head."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import vitcf
from vitcf.engine.evaluate import (
    KNN_KS,
    KNN_TEMPERATURE,
    accuracy,
    extract_features,
    fit_linear_head,
    forgetting,
    knn_accuracy,
    knn_correct,
    linear_head_accuracy,
    linear_head_correct,
    top1_correct,
)

SPEC = vitcf.BACKBONES["micro"]


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def naive_knn(bank, bank_labels, queries, query_labels, ks, temperature, num_classes):
    """DINO's weighted k-NN written out one query at a time, in float64, with a full sort."""
    bank = F.normalize(bank.double(), dim=1)
    queries = F.normalize(queries.double(), dim=1)
    correct = dict.fromkeys(ks, 0)
    for query, label in zip(queries, query_labels.tolist()):
        similarity = bank @ query
        order = torch.argsort(similarity, descending=True, stable=True)
        for k in ks:
            votes = [0.0] * num_classes
            for j in order[:k].tolist():
                votes[int(bank_labels[j])] += math.exp(similarity[j].item() / temperature)
            prediction = max(range(num_classes), key=lambda c: (votes[c], -c))  # ties: lowest class
            correct[k] += prediction == label
    return {k: 100.0 * correct[k] / len(queries) for k in ks}


def clustered(n, num_classes, width, noise, seed, centers=None):
    """Features around random class centres (noisy enough that the k-NN makes mistakes)."""
    g = _gen(seed)
    if centers is None:
        centers = torch.randn(num_classes, width, generator=_gen(1000 + num_classes * width))
    labels = torch.randint(0, num_classes, (n,), generator=g)
    return centers[labels] + noise * torch.randn(n, width, generator=g), labels


# --- knn_accuracy --------------------------------------------------------------------------------

@pytest.mark.parametrize("temperature", [0.07, 0.5, 2.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_knn_matches_naive_reference(seed, temperature):
    bank, bank_labels = clustered(300, 6, 12, noise=1.2, seed=seed)
    queries, query_labels = clustered(80, 6, 12, noise=1.2, seed=seed + 100)
    ks = (1, 3, 10, 20, 57, 300)
    expected = naive_knn(bank, bank_labels, queries, query_labels, ks, temperature, 6)
    got = knn_accuracy(bank, bank_labels, queries, query_labels, ks=ks, temperature=temperature, chunk_size=32)
    assert got == pytest.approx(expected, abs=1e-9)
    assert list(got) == list(ks)
    # the test is only worth something if the k-NN is neither perfect nor hopeless and k matters
    assert 40 < got[10] and max(got.values()) < 100 and len(set(got.values())) > 2


def test_chunking_never_changes_results():
    bank, bank_labels = clustered(500, 10, 16, noise=1.5, seed=2)
    queries, query_labels = clustered(203, 10, 16, noise=1.5, seed=3)
    results = [
        knn_accuracy(bank, bank_labels, queries, query_labels, ks=(1, 10, 20, 100, 200), chunk_size=size)
        for size in (1, 7, 64, 203, 10_000)
    ]
    assert all(r == results[0] for r in results[1:])


def test_weighting_lets_two_near_neighbours_outvote_three_far_ones():
    def unit(cosine):  # a 2-d unit vector at the given cosine from the query (1, 0)
        return [cosine, math.sqrt(1 - cosine**2)]

    # class 0: two near neighbours; class 1: three farther ones; class 2: two opposite, never in the top 5
    bank = torch.tensor([unit(0.99), unit(0.98), unit(0.80), unit(0.79), unit(0.78), unit(-0.5), unit(-0.6)])
    bank_labels = torch.tensor([0, 0, 1, 1, 1, 2, 2])
    query, query_label = torch.tensor([[1.0, 0.0]]), torch.tensor([0])
    # T = 0.07: 2 exp(0.985/0.07) ~ 2.6e6 beats 3 exp(0.79/0.07) ~ 2.4e5
    assert knn_accuracy(bank, bank_labels, query, query_label, ks=(1, 2, 5), temperature=0.07) == {
        1: 100.0, 2: 100.0, 5: 100.0
    }
    # T = 10: every weight is ~1, so it is a plain majority of 3 against 2
    assert knn_accuracy(bank, bank_labels, query, query_label, ks=(1, 2, 5), temperature=10.0) == {
        1: 100.0, 2: 100.0, 5: 0.0
    }
    # and with all 7 at T = 10 the three class-1 votes still win (class 2's weights are the smallest)
    assert knn_accuracy(bank, bank_labels, query, query_label, ks=7, temperature=10.0) == {7: 0.0}


def test_tiny_temperature_does_not_overflow():
    # exp(s / 0.001) overflows float32; the prediction must still be the nearest neighbour's class
    bank, bank_labels = clustered(200, 5, 8, noise=1.0, seed=4)
    queries, query_labels = clustered(50, 5, 8, noise=1.0, seed=5)
    nearest = knn_accuracy(bank, bank_labels, queries, query_labels, ks=1)
    assert knn_accuracy(bank, bank_labels, queries, query_labels, ks=(1, 20, 200), temperature=1e-3) == {
        1: nearest[1], 20: nearest[1], 200: nearest[1]
    }


def test_separable_classes_give_100():
    width, per_class = 8, 30
    directions = torch.eye(width)  # class c sits tightly around axis c
    bank_labels = torch.arange(width).repeat_interleave(per_class)
    bank = directions[bank_labels] + 0.05 * torch.randn(len(bank_labels), width, generator=_gen(5))
    query_labels = torch.arange(width).repeat(5)
    queries = directions[query_labels] + 0.05 * torch.randn(len(query_labels), width, generator=_gen(6))
    got = knn_accuracy(bank, bank_labels, queries, query_labels, ks=(1, 10, 20, 100, 200))
    assert got == {1: 100.0, 10: 100.0, 20: 100.0, 100: 100.0, 200: 100.0}


def test_shuffled_labels_are_near_chance():
    bank, bank_labels = clustered(2000, 10, 16, noise=0.5, seed=7)
    queries, query_labels = clustered(2000, 10, 16, noise=0.5, seed=8)
    assert min(knn_accuracy(bank, bank_labels, queries, query_labels).values()) > 95  # real labels: easy
    shuffled = bank_labels[torch.randperm(len(bank_labels), generator=_gen(9))]
    got = knn_accuracy(bank, shuffled, queries, query_labels)
    assert set(got) == set(KNN_KS)
    assert all(5 < v < 15 for v in got.values()), got


def test_knn_is_invariant_to_feature_scale_and_deterministic():
    bank, bank_labels = clustered(300, 6, 12, noise=1.2, seed=10)
    queries, query_labels = clustered(100, 6, 12, noise=1.2, seed=11)
    first = knn_accuracy(bank, bank_labels, queries, query_labels, ks=(5, 50))
    assert knn_accuracy(bank, bank_labels, queries, query_labels, ks=(5, 50)) == first
    scale = torch.rand(len(bank), 1, generator=_gen(12)) * 10 + 0.1
    assert knn_accuracy(bank * scale, bank_labels, queries * 3, query_labels, ks=(5, 50)) == first


def test_knn_defaults_and_num_classes():
    assert KNN_KS == (10, 20, 100, 200) and KNN_TEMPERATURE == 0.07
    bank, bank_labels = clustered(250, 4, 8, noise=1.0, seed=13)
    queries, query_labels = clustered(40, 4, 8, noise=1.0, seed=14)
    default = knn_accuracy(bank, bank_labels, queries, query_labels)
    assert list(default) == list(KNN_KS)
    # extra classes nobody votes for change nothing
    assert knn_accuracy(bank, bank_labels, queries, query_labels, num_classes=50) == default


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ks": (1, 11)}, r"k=11 .*bank size \(10\)"),
        ({"ks": (0,)}, r"k=0 .*bank size \(10\)"),
        ({"ks": (-3,)}, r"k=-3"),
        ({"ks": (2.5,)}, r"2\.5"),
        ({"ks": ()}, r"at least one k"),
        ({"temperature": 0.0}, r"temperature .* got 0\.0"),
        ({"temperature": -1}, r"temperature .* got -1"),
        ({"temperature": float("nan")}, r"temperature .* got nan"),
        ({"chunk_size": 0}, r"chunk_size .* got 0"),
        ({"num_classes": 2}, r"label 2 is out of range; allowed: 0\.\.1"),
    ],
)
def test_knn_validation_names_the_bad_value(kwargs, message):
    bank, bank_labels = torch.randn(10, 4, generator=_gen(0)), torch.arange(10) % 3
    queries, query_labels = torch.randn(5, 4, generator=_gen(1)), torch.arange(5) % 3
    with pytest.raises(ValueError, match=message):
        knn_accuracy(bank, bank_labels, queries, query_labels, **{"ks": (1, 5), **kwargs})


def test_knn_shape_errors():
    bank, bank_labels = torch.randn(10, 4), torch.zeros(10, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"widths differ: bank 4, query 5"):
        knn_accuracy(bank, bank_labels, torch.randn(3, 5), torch.zeros(3, dtype=torch.int64), ks=(1,))
    with pytest.raises(ValueError, match=r"labels must have shape \(3,\)"):
        knn_accuracy(bank, bank_labels, torch.randn(3, 4), torch.zeros(4, dtype=torch.int64), ks=(1,))
    with pytest.raises(ValueError, match=r"integers, got dtype torch.float32"):
        knn_accuracy(bank, bank_labels.float(), torch.randn(3, 4), torch.zeros(3, dtype=torch.int64), ks=(1,))
    with pytest.raises(ValueError, match=r"query label -1 is out of range"):
        knn_accuracy(bank, bank_labels, torch.randn(3, 4), torch.tensor([0, -1, 0]), ks=(1,))


# --- extract_features ----------------------------------------------------------------------------

def _transform(images):
    return (images.float() / 255 - 0.5) / 0.5


def _uint8_batches(sizes=(5, 3, 4), seed=0):
    g = _gen(seed)
    batches = []
    for size in sizes:
        shape = (size, SPEC.in_chans, SPEC.img_size, SPEC.img_size)
        images = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
        batches.append((images, torch.randint(0, 10, (size,), generator=g, dtype=torch.int32)))
    return batches


def test_extract_features_are_normalised_cls_features(micro):
    model = micro()
    batches = _uint8_batches()
    features, labels = extract_features(model, batches, _transform)
    assert features.shape == (12, 32) and features.dtype == torch.float32 and features.device.type == "cpu"
    assert labels.dtype == torch.int64 and torch.equal(labels, torch.cat([b[1] for b in batches]).long())
    torch.testing.assert_close(features.norm(dim=1), torch.ones(12))
    images = torch.cat([b[0] for b in batches])
    with torch.no_grad():
        direct = vitcf.cls_features(model, _transform(images))
    torch.testing.assert_close(features, F.normalize(direct, dim=1), rtol=1e-5, atol=1e-5)
    # the features are not trivially the same for every image
    assert (features @ features.T).min() < 0.99


def test_extract_features_uses_eval_mode_and_restores_every_module(micro):
    model = micro()
    model.train()
    model.blocks[3].eval()  # a deliberately mixed state must come back as it was
    before = {name: m.training for name, m in model.named_modules()}
    seen = []
    model.blocks[0].register_forward_pre_hook(lambda module, args: seen.append(module.training))
    extract_features(model, _uint8_batches(), _transform)
    assert seen == [False, False, False]
    assert {name: m.training for name, m in model.named_modules()} == before
    model.eval()
    extract_features(model, _uint8_batches(), _transform)
    assert not any(m.training for m in model.modules())


def test_extract_features_restores_mode_after_an_error(micro):
    model = micro().train()

    def bad_batches():
        yield _uint8_batches()[0]
        raise RuntimeError("loader died")

    with pytest.raises(RuntimeError, match="loader died"):
        extract_features(model, bad_batches(), _transform)
    assert all(m.training for m in model.modules())


def test_extract_features_through_peft_lora(micro):
    batches = _uint8_batches()
    plain, _ = extract_features(micro(), batches, _transform)
    model = vitcf.apply_method(micro(), "lora", r=4)
    model.train()
    features, labels = extract_features(model, batches, _transform)
    assert model.training and features.shape == (12, 32)
    torch.testing.assert_close(features, plain, rtol=1e-5, atol=1e-5)  # LoRA is the identity at init
    with torch.no_grad():  # once the adapters do something, the features must go through them
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5, generator=_gen(3))
    adapted, _ = extract_features(model, batches, _transform)
    assert (adapted - plain).abs().max() > 1e-2
    with torch.no_grad():
        direct = vitcf.cls_features(model.eval(), _transform(torch.cat([b[0] for b in batches])))
    torch.testing.assert_close(adapted, F.normalize(direct, dim=1), rtol=1e-5, atol=1e-5)


def test_extract_features_progress_bar_only_when_asked(micro, capsys):
    model = micro()
    extract_features(model, _uint8_batches(), _transform)
    assert capsys.readouterr().err == ""
    extract_features(model, iter(_uint8_batches()), _transform, total=3, progress=True)
    shown = capsys.readouterr().err
    assert "features" in shown and "/3" in shown


def test_extract_features_errors(micro):
    model = micro()
    with pytest.raises(ValueError, match="no batches"):
        extract_features(model, [], _transform)
    images, labels = _uint8_batches()[0]
    with pytest.raises(ValueError, match=r"batch 0: labels must have shape \(5,\)"):
        extract_features(model, [(images, labels[:4])], _transform)


# --- accuracy ------------------------------------------------------------------------------------

class PixelLogits(nn.Module):
    """Predicts the class written in each image's first pixel: logits are a one-hot of it."""

    def __init__(self, num_classes=4):
        super().__init__()
        self.num_classes = num_classes
        self.seen_training = []

    def forward(self, x):
        self.seen_training.append(self.training)
        return F.one_hot(x[:, 0, 0, 0].long(), self.num_classes).float()


def _pixel_batches(predicted, labels, sizes):
    batches, start = [], 0
    for size in sizes:
        images = torch.zeros(size, 3, 2, 2, dtype=torch.uint8)
        images[:, 0, 0, 0] = torch.tensor(predicted[start:start + size], dtype=torch.uint8)
        batches.append((images, torch.tensor(labels[start:start + size])))
        start += size
    return batches


def test_accuracy_is_the_exact_percent():
    predicted = [0, 1, 2, 3, 0, 1, 2, 3]
    labels = [0, 1, 2, 0, 0, 3, 2, 3]  # 6 of 8 right
    model = PixelLogits().train()
    got = accuracy(model, _pixel_batches(predicted, labels, (3, 1, 4)), lambda x: x.float())
    assert got == 75.0
    assert model.seen_training == [False, False, False] and model.training


def test_top1_correct_is_per_image_in_order():
    predicted, labels = [0, 1, 2, 3, 3], [0, 0, 2, 1, 3]  # right, wrong, right, wrong, right
    hits = top1_correct(PixelLogits(), _pixel_batches(predicted, labels, (2, 3)), lambda x: x.float())
    assert hits.dtype == torch.bool and hits.tolist() == [True, False, True, False, True]


def test_accuracy_rejects_labels_outside_the_logits():
    with pytest.raises(ValueError, match=r"label 7 is out of range for a model with 4 outputs"):
        accuracy(PixelLogits(), _pixel_batches([0, 1], [0, 7], (2,)), lambda x: x.float())
    with pytest.raises(ValueError, match="no images"):
        accuracy(PixelLogits(), [], lambda x: x.float())


def test_accuracy_of_the_micro_vit_matches_its_argmax(micro):
    model = micro()
    batches = _uint8_batches(sizes=(6, 6))
    images, labels = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches]).long()
    with torch.no_grad():
        expected = 100.0 * (model(_transform(images)).argmax(1) == labels).sum().item() / len(labels)
    assert accuracy(model, batches, _transform) == pytest.approx(expected)


# --- forgetting ----------------------------------------------------------------------------------

def test_forgetting_arithmetic():
    got = forgetting({10: 80.0, 20: 50.0, 100: 0.0}, {20: 55.0, 10: 60.0, 100: 0.0})
    assert got == {
        10: {"baseline": 80.0, "after": 60.0, "drop": 20.0, "relative_drop": 0.25},
        20: {"baseline": 50.0, "after": 55.0, "drop": -5.0, "relative_drop": -0.1},
        100: {"baseline": 0.0, "after": 0.0, "drop": 0.0, "relative_drop": 0.0},
    }


def test_forgetting_needs_the_same_ks():
    with pytest.raises(ValueError, match=r"only in baseline: \[20\], only in after: \[200\]"):
        forgetting({10: 1.0, 20: 2.0}, {10: 1.0, 200: 2.0})


# --- linear head ---------------------------------------------------------------------------------

def _separable(n, seed, num_classes=5, width=16):
    centers = torch.randn(num_classes, width, generator=_gen(77))
    features, labels = clustered(n, num_classes, width, noise=0.3, seed=seed, centers=centers)
    return F.normalize(features, dim=1), labels


def test_fit_linear_head_learns_separable_features():
    train, train_labels = _separable(600, seed=0)
    test, test_labels = _separable(300, seed=1)
    head = fit_linear_head(train, train_labels, 5, epochs=100)
    assert isinstance(head, nn.Linear) and (head.in_features, head.out_features) == (16, 5)
    assert not any(p.requires_grad for p in head.parameters())
    assert linear_head_accuracy(head, train, train_labels) == 100.0
    assert linear_head_accuracy(head, test, test_labels) >= 98.0


def test_fit_linear_head_is_deterministic_under_the_seed():
    train, labels = _separable(400, seed=2)
    a = fit_linear_head(train, labels, 5, epochs=20, seed=3)
    b = fit_linear_head(train, labels, 5, epochs=20, seed=3)
    c = fit_linear_head(train, labels, 5, epochs=20, seed=4)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert not torch.equal(a.weight, c.weight)


def test_weight_decay_shrinks_the_head():
    train, labels = _separable(400, seed=5)
    free = fit_linear_head(train, labels, 5, epochs=50)
    decayed = fit_linear_head(train, labels, 5, epochs=50, weight_decay=0.1)
    assert decayed.weight.norm() < 0.5 * free.weight.norm()


def test_linear_head_accuracy_matches_a_manual_count():
    head = nn.Linear(3, 4)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [-1, -1, -1]]))
        head.bias.zero_()
    features = torch.tensor([[1.0, 0, 0], [0, 2, 0], [0, 0, 3], [-1, -1, 0], [0.5, 0.6, 0]])
    labels = torch.tensor([0, 1, 1, 3, 0])  # predictions 0, 1, 2, 3, 1: three right
    assert linear_head_accuracy(head, features, labels) == 60.0
    features, labels = torch.randn(20000, 3, generator=_gen(6)), torch.randint(0, 4, (20000,), generator=_gen(7))
    manual = 100.0 * (features @ head.weight.T + head.bias).argmax(1).eq(labels).sum().item() / 20000
    assert linear_head_accuracy(head, features, labels) == manual


def test_per_query_correctness_is_what_the_accuracies_average():
    bank, bank_labels = torch.randn(300, 8, generator=_gen(11)), torch.randint(0, 5, (300,), generator=_gen(12))
    queries, query_labels = torch.randn(77, 8, generator=_gen(13)), torch.randint(0, 5, (77,), generator=_gen(14))
    hits = knn_correct(bank, bank_labels, queries, query_labels, ks=(1, 20), chunk_size=10)
    accuracies = knn_accuracy(bank, bank_labels, queries, query_labels, ks=(1, 20))
    for k in (1, 20):
        assert hits[k].dtype == torch.bool and hits[k].shape == (77,)
        assert 100.0 * hits[k].sum().item() / 77 == accuracies[k]
    # k=1: a query is right exactly when its nearest bank item carries its label
    nearest = (F.normalize(queries, dim=1) @ F.normalize(bank, dim=1).T).argmax(1)
    assert torch.equal(hits[1], bank_labels[nearest] == query_labels)
    head = nn.Linear(3, 4)
    with torch.no_grad():
        head.weight.copy_(torch.eye(4, 3))
        head.bias.zero_()
    features = torch.tensor([[1.0, 0, 0], [0, 2, 0], [0, 0, 3], [0.5, 0.6, 0]])
    assert linear_head_correct(head, features, torch.tensor([0, 1, 1, 0])).tolist() == [True, True, False, False]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda x, y: fit_linear_head(x, y, 3), r"training label [34] is out of range; allowed: 0\.\.2"),
        (lambda x, y: fit_linear_head(x, y, 0), r"num_classes must be an integer >= 1, got 0"),
        (lambda x, y: fit_linear_head(x, y, 5, epochs=0), r"epochs must be an integer >= 1, got 0"),
        (lambda x, y: fit_linear_head(x, y, 5, lr=-0.1), r"lr must be a finite number > 0.0, got -0.1"),
        (lambda x, y: fit_linear_head(x, y, 5, weight_decay=-1.0), r"weight_decay .* got -1.0"),
        (lambda x, y: linear_head_accuracy(nn.Linear(8, 5), x, y), r"feature width 16 does not match .* 8"),
    ],
)
def test_linear_head_validation(call, message):
    features, labels = _separable(50, seed=8)
    with pytest.raises(ValueError, match=message):
        call(features, labels)
