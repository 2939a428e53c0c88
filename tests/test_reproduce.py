"""A committed record is reproducible: re-executed from its own settings, it gives its own numbers.

Tolerance: every accuracy within REPRODUCE_TOLERANCE points (0.5: on the mini preset one digits
test image is 0.19 points and one k-NN query 0.05; a different CPU's float rounding can flip a
handful of near-tied predictions), the trainable count and the selected step exactly.
"""

import json
from pathlib import Path

import pytest

from vitcf.engine.study import execute, plan_from_record, plan_run

REPO = Path(__file__).resolve().parent.parent
REPRODUCE_TOLERANCE = 0.5


def close(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(abs(a[k] - b[k]) <= REPRODUCE_TOLERANCE for k in a)


def test_a_committed_mini_record_reproduces(tmp_path):
    path = REPO / "results" / "mini" / "linear_seed0.json"
    assert path.is_file(), f"{path} is not committed: run `make book` and commit results/mini/"
    record = json.loads(path.read_text())
    again = execute(plan_from_record(record, results_dir=tmp_path, device="cpu"), progress=False)
    a, b = record["metrics"], json.loads(json.dumps(again["metrics"]))
    assert again["trainable_params"] == record["trainable_params"] and b["best_step"] == a["best_step"]
    assert abs(b["new_domain_accuracy"] - a["new_domain_accuracy"]) <= REPRODUCE_TOLERANCE
    assert close(a["knn"], b["knn"]) and close(a["knn_baseline"], b["knn_baseline"])
    assert abs(b["linear_head"]["after"] - a["linear_head"]["after"]) <= REPRODUCE_TOLERANCE
    assert [s["step"] for s in b["knn_over_steps"]] == [s["step"] for s in a["knn_over_steps"]]
    assert all(close(x["knn"], y["knn"]) for x, y in zip(a["knn_over_steps"], b["knn_over_steps"]))


def test_a_changed_schedule_is_replanned_with_its_overrides(tmp_path):
    plan = plan_run("smoke", "lora", {"r": 4}, seed=1, results_dir=tmp_path, steps=3, lr=0.01, forgetting_steps=(0, 3))
    record = execute(plan, progress=False)
    again = plan_from_record(json.loads(json.dumps(record)), results_dir=tmp_path / "again")
    assert again.path.name == plan.path.name and again.train == plan.train
    assert again.forgetting_steps == (0, 3)
    record["config"]["train"]["steps"] = 4  # a setting the name does not account for
    with pytest.raises(ValueError, match="does not re-plan to itself"):
        plan_from_record(record, results_dir=tmp_path / "bad")
