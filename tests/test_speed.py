"""vitcf.engine.speed: FLOP accounting on small models, the timing helpers, and ratios, projection and table
computed from hand-made measurements."""

from collections import OrderedDict

import pytest
import torch
from torch import nn

from vitcf.base.paper import PAPER_ROWS
from vitcf.engine.imagenet import check_imagenet, imagenet_batches
from vitcf.engine.presets import get_preset
from vitcf.engine.speed.flops import count_flops, frozen_prefix, prefix_backward
from vitcf.engine.speed.measure import (METHODS, _timed, measure_peak, synthetic_cifar, synthetic_jpegs,
                                        write_imagenet_tree)
from vitcf.engine.speed.projection import add_ratios, judge, project_grid, project_lite, table
from vitcf.model.methods import make_method

CPU = torch.device("cpu")


def tiny_vit_like() -> nn.Module:
    """Linear layers named as a ViT's parts: a patch embedding, two blocks and a head, 4 features wide."""
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(
        patch_embed=nn.Linear(4, 4, bias=False),
        blocks=nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False)),
        head=nn.Linear(4, 3, bias=False),
    ))  # fmt: skip


def step_flops(model: nn.Module, batch: int = 2) -> dict:
    """`count_flops` of a forward pass and of a plain SGD step of `model` on a random batch."""
    x, y = torch.randn(batch, 4), torch.zeros(batch, dtype=torch.int64)
    optimiser = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)

    def step():
        loss = nn.functional.cross_entropy(model(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    return count_flops(lambda: model(x), step, batch)


def test_count_flops_gives_per_image_matmul_flops_forward_and_backward():
    model = tiny_vit_like()
    flops = step_flops(model)
    forward = 2 * (4 * 4 * 3 + 4 * 3)  # three 4x4 layers and the 4x3 head, 2 FLOPs per multiply-add
    assert flops["forward_per_image"] == forward
    # Backward: a weight gradient for every layer, an input gradient for every layer above the first.
    assert flops["backward_per_image"] == forward + 2 * (4 * 4 * 2 + 4 * 3)
    assert flops["train_per_image"] == flops["forward_per_image"] + flops["backward_per_image"]
    assert flops["backward_by_module"]["patch_embed"] == 2 * 4 * 4  # its weight gradient only
    assert flops["backward_by_module"]["head"] == 2 * 2 * 4 * 3


def test_the_frozen_prefix_is_the_embedding_and_the_blocks_below_the_first_trainable_one():
    model = tiny_vit_like()
    assert frozen_prefix(model) == []  # the embedding trains
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith(("blocks.1", "head"))
    assert frozen_prefix(model) == ["patch_embed", "blocks.0"]
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith("head")
    assert frozen_prefix(model) == ["patch_embed", "blocks.0", "blocks.1"]


def test_prefix_backward_is_zero_in_a_frozen_prefix_and_seen_where_gradients_flow():
    model = tiny_vit_like()
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith(("blocks.1", "head"))
    flops = step_flops(model)
    prefix = frozen_prefix(model)
    assert prefix_backward(flops, prefix) == {"modules": prefix, "backward_flops_per_image": 0.0,
                                              "back_propagated": False}
    trained = prefix_backward(flops, ["blocks.1"])  # a trainable block: its backward is counted
    assert trained["back_propagated"] is True and trained["backward_flops_per_image"] > 0
    assert prefix_backward(flops, ["blocks.7"])["back_propagated"] is None  # never seen running: unknown


def test_the_matmul_peak_is_the_best_size():
    peak = measure_peak(CPU, (16, 32), seconds=0.01)
    assert peak["dtype"] == "float32" and set(peak["flops_per_second_by_size"]) == {"16", "32"}
    assert peak["flops_per_second"] == max(peak["flops_per_second_by_size"].values()) > 0


def test_timed_batches_start_the_clock_after_the_warm_up_and_count_what_follows():
    marks = {"images": 0}
    source = [(torch.zeros(n), None) for n in (3, 5, 7, 2)]
    passed = []
    for batch in _timed(source, 2, marks, CPU):
        passed.append(len(batch[0]))
        if len(passed) == 2:
            assert "start" not in marks  # the clock starts when the third batch is asked for
    assert passed == [3, 5, 7, 2] and marks["images"] == 9 and "start" in marks


def test_synthetic_data_is_seeded_and_in_the_real_formats(tmp_path):
    a, b = synthetic_cifar(6, CPU, seed=1), synthetic_cifar(6, CPU, seed=1)
    assert a.images.shape == (6, 3, 32, 32) and a.num_classes == 100
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, synthetic_cifar(6, CPU, seed=2).images)
    files = synthetic_jpegs(3, ((40, 56), (56, 40)), seed=0)
    assert [bytes(f[:2].tolist()) for f in files] == [b"\xff\xd8"] * 3  # JPEG start-of-image markers
    root = write_imagenet_tree(tmp_path, files, count=5)
    assert check_imagenet(root) == root  # a tree the project's loader accepts
    (images, labels), = imagenet_batches(root, "train", 8, num_workers=0)  # alternately in two class folders
    assert images.shape == (5, 3, 224, 224) and labels.tolist() == [0, 0, 0, 1, 1]


def measured(key: str, images_per_second: float, forward: float, backward: float) -> dict:
    """A method as `measure_method` reports it, with made-up figures."""
    name, hparams = METHODS[key]
    return {"key": key, "method": name, "hparams": hparams, "label": make_method(name, **hparams).label,
            "images_per_second": images_per_second, "step_seconds": 128 / images_per_second,
            "peak_memory_bytes": 2**30, "frozen_prefix": {"back_propagated": False, "backward_flops_per_image": 0},
            "flops": {"forward_per_image": forward, "backward_per_image": backward,
                      "train_per_image": forward + backward}}


@pytest.fixture
def doc():
    """A judged document of made-up measurements: every paper row timed, the reference 5x slower."""
    methods = [measured(key, 1000.0 * (1 + i), 10.0 + i, 20.0 - i) for i, key in enumerate(METHODS)]
    peak = {"dtype": "bfloat16", "flops_per_second": 100_000.0}
    reference = {"images_per_second": 200.0, "step_seconds": 0.64, "peak_memory_bytes": 2**31,
                 "flops": {"forward_per_image": 10.0, "train_per_image": 30.0}}
    add_ratios(methods, peak, reference)
    rate = {"images_per_second": 8000.0}
    evaluation = {"project_pipeline": rate, "gpu_decode": rate, "selection": rate}
    out = {"smoke": False, "gpu": "NVIDIA H100 80GB HBM3", "environment": {"hardware": "x"}, "peak": peak,
           "methods": methods, "reference": reference, "evaluation": evaluation,
           "projection": project_grid(methods, evaluation, get_preset("paper")),
           "projection_lite": project_lite(methods, evaluation, get_preset("paper-lite"))}
    out["targets"] = judge(out)
    return out


def test_ratios_are_taken_against_full_fine_tuning_the_peak_and_the_reference(doc):
    full, top3 = doc["methods"][0], doc["methods"][1]
    assert full["speed_vs_full"] == 1.0 and top3["speed_vs_full"] == 2.0 and top3["no_slower_than_full"]
    assert top3["flops"]["backward_vs_full"] == 19 / 20 and top3["flops"]["train_vs_forward"] == 30 / 11
    assert full["mfu"] == 1000 * 30 / 100_000 and full["vs_reference"] == 5.0
    assert doc["reference"]["mfu"] == 200 * 30 / 100_000


def test_the_projection_needs_every_paper_row_timed():
    methods = [measured("full", 1000.0, 10.0, 20.0), measured("linear", 2000.0, 10.0, 1.0)]
    add_ratios(methods, {"flops_per_second": 1.0}, {"reason": "skipped"})
    assert "vs_reference" not in methods[0]
    rate = {"images_per_second": 100.0}
    evaluation = {"project_pipeline": rate, "gpu_decode": rate, "selection": rate}
    projection = project_grid(methods, evaluation, get_preset("paper"))
    assert projection["projected"] is False and "Top-3" in projection["reason"]


def test_judged_targets_and_the_table_show_the_measured_values(doc):
    judged = {t["name"]: t["status"] for t in doc["targets"]}
    assert judged["full_mfu"] == "fail" and judged["full_vs_reference"] == "pass"  # 0.3 < 0.4; 5x >= 4x
    assert judged["evaluation_images_per_second"] == "pass" and judged["no_method_slower_than_full"] == "pass"
    assert len(doc["projection"]["runs"]) == len(PAPER_ROWS)
    text = table(doc)
    assert text.startswith("paper_speed on NVIDIA H100 80GB HBM3\nbfloat16 matmul peak: 1e-07 TFLOP/s")
    assert "reference full" in text and f"paper grid projected: {doc['projection']['gpu_hours']:.2f}" in text
    assert "  fail                     full fine-tuning model FLOP utilisation >= 40%: measured 0.3" in text
