"""Run identity: one decision of what a run changes from its preset, and the names that follow from it."""

from pathlib import Path

import pytest

from vitcf.engine import naming, records
from vitcf.model.methods import make_method
from vitcf.engine.presets import GRIDS, get_preset
from vitcf.engine.runner import SweepRun
from vitcf.engine.study import plan_from_record, plan_run

REPO = Path(__file__).resolve().parent.parent


def test_only_what_differs_from_the_preset_is_an_override():
    smoke = get_preset("smoke")
    point = next(p for p in smoke.grid if p.method == "lora")
    own_lr = smoke.schedule_for("lora", point.hparams)[0]
    assert naming.overrides(smoke, "lora", point.hparams) == {}
    assert naming.overrides(smoke, "lora", point.hparams, lr=own_lr, steps=smoke.steps) == {}
    assert naming.overrides(smoke, "lora", point.hparams, lr=own_lr * 2, steps=smoke.steps + 1, source_size=8) == {
        "lr": own_lr * 2, "steps": smoke.steps + 1, "source_size": 8}
    assert naming.point_overrides(smoke, point) == {}
    # the rate the preset gives a configuration is its grid's, whether its hyperparameters are asked or resolved
    resolved = make_method("lora", **point.hparams).hparams
    assert resolved != point.hparams and naming.overrides(smoke, "lora", resolved, lr=own_lr) == {}


def test_a_plan_names_its_record_from_the_overrides_alone(tmp_path):
    smoke = get_preset("smoke")
    plain = plan_run("smoke", "linear", {}, 0, results_dir=tmp_path)
    same = plan_run("smoke", "linear", {}, 0, results_dir=tmp_path, steps=smoke.steps,
                    lr=smoke.schedule_for("linear", {})[0])
    assert plain.path == same.path == tmp_path / "linear_seed0.json"
    short = plan_run("smoke", "linear", {}, 0, results_dir=tmp_path, steps=3)
    assert short.path.stem == naming.record_name("linear", {}, 0, {"steps": 3}) != plain.path.stem
    assert short.path.stem == f"linear_seed0_{naming.config_hash({'steps': 3})}"


@pytest.mark.parametrize("grid", GRIDS)
def test_a_sweeps_runs_pass_their_overrides_to_the_notebook(grid):
    smoke = get_preset("smoke")
    for point in smoke.points(grid):
        changes = naming.point_overrides(smoke, point)
        plan = plan_run("smoke", point.method, point.hparams, 0, **changes)
        parameters = SweepRun(point, "label", plan).parameters()
        assert {k: parameters[k] for k in changes} == changes
        assert all(parameters[k] == "" for k in ("lr", "steps", "source_size") if k not in changes)
        assert naming.grid_key(plan.path.stem) in naming.grid_keys("smoke", grid)


def test_every_committed_record_has_the_name_its_grid_point_gives():
    for preset in ("mini", "mini-glyphs"):
        keys = set().union(*(naming.grid_keys(preset, grid) for grid in GRIDS))
        runs = records.read_records(REPO / "results" / preset)
        assert runs and {naming.grid_key(r["run"]) for r in runs} <= keys
    # a shortened run of the schedule axis re-plans to its own name
    shortened = next(r for r in runs if r["config"]["train"]["steps"] != get_preset(preset).steps)
    assert plan_from_record(shortened, results_dir=REPO / "nowhere", device="cpu").path.stem == shortened["run"]
