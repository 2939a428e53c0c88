"""Sweeps of the smoke preset: the real notebook executed by papermill in a real kernel.

A kernel start plus a smoke run costs ~15-20 s here, so one scenario carries the executions
(failure, isolation, resume, skip) and everything that needs no kernel is tested on its own.
"""

import functools
import json

import nbformat
import pytest

import vitcf.engine.sweep
from vitcf.base import io
from vitcf.engine.cli import main
from vitcf.model.methods import make_method
from vitcf.engine.presets import AXIS_RATES, DESIGN_BLOCK_COPIES, DESIGN_LORA_RANKS, get_preset
from vitcf.engine.naming import grid_key, grid_keys
from vitcf.engine.sweep import NOTEBOOK, plan_sweep, select_points, sweep

ONLY = ["linear", "LoRA r=4"]
NAMES = ["linear_seed0", "lora_r4_seed0"]




def executed_cleanly(path, method):
    nb = nbformat.read(path, as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    return len(injected) == 1 and f'method = "{method}"' in injected[0].source and not errors


def test_a_failed_run_is_isolated_then_resumed_then_skipped(tmp_path, failing_notebook, monkeypatch, capsys):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "linear_seed0.ipynb").write_text("{")  # an interrupted earlier attempt: no record

    # 1. the CLI, with LoRA failing in its notebook: Linear still completes, the exit code says 1
    monkeypatch.setattr(vitcf.engine.sweep, "sweep", functools.partial(sweep, notebook=failing_notebook))
    assert main(["sweep", "--preset", "smoke", "--only", *ONLY, "--results-dir", str(folder), "--quiet"]) == 1
    out = capsys.readouterr().out
    error_path = folder / "lora_r4_seed0.error.json"
    assert "done     Linear seed 0" in out
    assert "FAILED   LoRA r=4 seed 0 in " in out and "RuntimeError: injected failure for lora" in out
    assert str(error_path) in out and "1 done, 0 skipped, 1 failed" in out
    error = io.read_json(error_path)
    assert error["error"]["type"] == "RuntimeError" and error["error"]["message"] == "injected failure for lora"
    assert "injected failure" in error["error"]["traceback"] and "\x1b[" not in error["error"]["traceback"]
    assert error["notebook"] == str(folder / "lora_r4_seed0.ipynb") and error["parameters"]["method"] == "lora"
    assert not (folder / "lora_r4_seed0.json").exists()
    assert executed_cleanly(folder / "linear_seed0.ipynb", "linear")  # the partial notebook was re-run

    # 2. the real notebook: the failed run is retried and its error file removed; Linear is skipped
    summary = sweep("smoke", only=ONLY, results_dir=folder, progress=False)
    assert summary.ok and summary.failed == []
    assert (summary.completed, summary.skipped) == (["lora_r4_seed0"], ["linear_seed0"])
    assert not error_path.exists()
    expected = {"baseline.json", "baseline_head.safetensors"} | {f"{n}.{e}" for n in NAMES for e in ("json", "ipynb")}
    # (weights/ holds the runs' fine-tuned tensors kept for the analyses: vitcf.engine.study.trained_path)
    assert {p.name for p in folder.iterdir()} - {"weights"} == expected
    for name, method in zip(NAMES, ["linear", "lora"]):
        assert io.read_json(folder / f"{name}.json")["run"] == name
        assert executed_cleanly(folder / f"{name}.ipynb", method)

    # 3. everything exists: the CLI runs nothing, touches nothing and exits 0
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert main(["sweep", "--preset", "smoke", "--only", *ONLY, "--results-dir", str(folder), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.count("skipped  ") == 2 and "0 done, 2 skipped, 0 failed" in out
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamps


@pytest.mark.parametrize("kwargs, match", [
    ({"preset": "tiny"}, "unknown preset 'tiny'; allowed: paper, mini, smoke"),
    ({"only": ["lora", "LoRA r=5"]}, r"\['LoRA r=5'\] match no point of the core grid .*allowed: method names full, top_k"),
    ({"only": []}, "names no grid point .*labels Full, Top-3"),
    ({"seeds": (0, -1)}, r"seed must be an integer in \[0, 4294967295\], got -1"),
    ({"seeds": ()}, "at least one seed"),
    ({"forgetting_steps": (7,)}, r"forgetting steps must be integers in \[0, 6\], got \[7\]"),
    ({"device": "tpu"}, "allowed: cpu, cuda"),
])
def test_bad_arguments_fail_before_anything_is_written(tmp_path, kwargs, match):
    folder = tmp_path / "results"
    arguments = {"preset": "smoke", "results_dir": folder, "progress": False} | kwargs
    with pytest.raises(ValueError, match=match):
        sweep(arguments.pop("preset"), **arguments)
    assert not folder.exists()


def test_cli_bad_arguments_exit_2_and_write_nothing(tmp_path, capsys):
    folder = tmp_path / "results"
    assert main(["sweep", "--preset", "smoke", "--only", "loraa", "--results-dir", str(folder), "--quiet"]) == 2
    assert "vitcf sweep: error: `only` entries ['loraa']" in capsys.readouterr().err
    assert main(["sweep", "--preset", "smoke", "--seeds", "1", "-2", "--results-dir", str(folder)]) == 2
    assert "got -2" in capsys.readouterr().err
    assert not folder.exists()


def test_a_missing_notebook_fails_up_front(tmp_path):
    with pytest.raises(FileNotFoundError, match="sweep notebook not found"):
        sweep("smoke", only="linear", results_dir=tmp_path / "r", notebook=tmp_path / "none.ipynb", progress=False)
    assert not (tmp_path / "r").exists()


def test_plan_selects_by_method_or_label_seed_by_seed(tmp_path):
    runs = plan_sweep("smoke", seeds=(0, 2, 0), only=["Block exp. p=2", "LoRA r=4", "lora"], results_dir=tmp_path,
                      device="cpu")
    names = ["lora_r4", "lora_r8", "lora_r16", "block_expansion_p2"]
    assert [r.name for r in runs] == [f"{n}_seed{s}" for s in (0, 2) for n in names]  # grid order, once each
    assert select_points(get_preset("smoke"), None) == get_preset("smoke").grid
    assert [p.hparams for p in select_points(get_preset("smoke"), "block_expansion")] == [{"p": p} for p in range(1, 5)]
    run = runs[0]
    assert run.label == "LoRA r=4" and run.notebook == tmp_path / "lora_r4_seed0.ipynb"
    assert run.error == tmp_path / "lora_r4_seed0.error.json"
    parameters = run.parameters()
    assert parameters == {"preset": "smoke", "method": "lora", "hparams": '{"r": 4}', "seed": 0,
                          "results_dir": str(tmp_path.resolve()), "forgetting_steps": "[0, 3, 6]", "lr": "", "steps": "",
                          "source_size": "", "device": "cpu", "force": False}
    assert all(isinstance(v, (str, int, bool)) for v in parameters.values())  # papermill wants plain values
    assert not any(tmp_path.iterdir())


def test_the_notebook_is_saved_clean_with_the_documented_parameters():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    assert all(not c.outputs and c.execution_count is None for c in code)
    namespace = {}
    exec(code[0].source, namespace)
    assert {k: namespace[k] for k in ("preset", "method", "hparams", "seed", "results_dir", "forgetting_steps",
                                      "lr", "steps", "device", "force")} == {
        "preset": "smoke", "method": "linear", "hparams": "{}", "seed": 0, "results_dir": "",
        "forgetting_steps": "", "lr": "", "steps": "", "device": "", "force": False}
    assert json.loads(namespace["hparams"]) == {}  # an empty forgetting_steps means the preset's


# --- the design-space grid ------------------------------------------------------------------------

def test_the_design_grid_turns_each_knob_through_its_range():
    design = get_preset("mini").design
    configs = [make_method(p.method, **p.hparams) for p in design]
    assert len({c.label for c in configs}) == len(configs)  # every point has its own name
    lora = [(c.target, c.r) for c in configs if c.name == "lora"]
    assert sorted(lora) == sorted({(t, r) for t in ("qv", "qkv", "all") for r in (1, 4, 16, 64)} | {("qv", 8)})
    assert sorted(lora) == sorted((t, r) for t, ranks in DESIGN_LORA_RANKS.items() for r in ranks)
    assert [c.k for c in configs if c.name == "top_k"] == list(range(1, 13))
    assert sorted((c.placement, c.p) for c in configs if c.name == "block_expansion") == sorted(
        (placement, p) for placement in ("spread", "top") for p in DESIGN_BLOCK_COPIES)
    assert [c.block for c in configs if c.name == "surgical"] == [0, 6, 11]
    rates = {(p.method, p.lr) for p in design}
    assert rates == {("lora", 0.005), ("top_k", 0.005), ("block_expansion", 0.05), ("surgical", 0.005)}


def test_a_design_sweep_holds_the_rate_fixed_and_shares_the_core_runs(tmp_path):
    runs = plan_sweep("smoke", grid="design", results_dir=tmp_path, device="cpu")
    assert len(runs) == len(get_preset("smoke").design) and not any(tmp_path.iterdir())
    core = {r.name for r in plan_sweep("smoke", results_dir=tmp_path, device="cpu")}
    shared = {r.name for r in runs} & core  # one run, one record, whichever sweep makes it
    assert shared == {"lora_r8_seed0", "top_k_k3_seed0", *(f"block_expansion_p{p}_seed0" for p in range(1, 5))}
    by_label = {r.label: r for r in runs}
    r4 = by_label["LoRA r=4"]  # the paper trains r=4 at 0.05; the design space at r=8's 0.005
    assert r4.plan.train.lr == 0.005 and r4.parameters()["lr"] == 0.005 and r4.name.startswith("lora_r4_seed0_")
    assert by_label["LoRA r=8"].parameters()["lr"] == "" and by_label["Top-7"].plan.train.lr == 0.005
    assert by_label["Block exp. p=2 (top)"].plan.train.lr == 0.05
    assert all(r.plan.forgetting_steps == () for r in runs)  # compared at the end of training
    asked = plan_sweep("smoke", grid="design", only="surgical", forgetting_steps=(0, 3), results_dir=tmp_path)
    assert [r.plan.forgetting_steps for r in asked] == [(0, 3)] * 3
    assert grid_keys("smoke", "design") == {grid_key(r.name) for r in runs}
    assert grid_key("lora_r4_seed12_0a04019617") == "lora_r4_0a04019617" and grid_key("full_seed3") == "full"


def test_a_bad_grid_is_named_with_the_allowed_ones(tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown grid 'bogus'; allowed: core, design"):
        plan_sweep("smoke", grid="bogus", results_dir=tmp_path)
    with pytest.raises(ValueError, match=r"\['full'\] match no point of the design grid of preset 'smoke'"):
        plan_sweep("smoke", grid="design", only="full", results_dir=tmp_path)
    assert main(["sweep", "--preset", "smoke", "--grid", "bogus", "--results-dir", str(tmp_path / "r")]) == 2
    assert "unknown grid 'bogus'; allowed: core, design" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_design_point_runs_through_the_notebook_at_its_own_rate(tmp_path):
    summary = sweep("smoke", grid="design", only=["LoRA r=4"], results_dir=tmp_path, progress=False)
    (name,) = summary.completed
    record = io.read_json(tmp_path / f"{name}.json")
    assert record["config"]["train"]["lr"] == 0.005 and record["hparams"]["r"] == 4
    assert record["metrics"]["knn_over_steps"] == [] and executed_cleanly(tmp_path / f"{name}.ipynb", "lora")


# --- the two axes: learning rate and schedule length -------------------------------------------------

def test_the_axis_grids_put_five_families_on_one_rate_grid_and_longer_schedules():
    mini = get_preset("mini")
    labels = ["Full", "Top-3", "Linear", "LoRA r=8", "Block exp. p=2"]
    rates = {(make_method(p.method, **p.hparams).label, p.lr) for p in mini.rates}
    assert rates == {(label, lr) for label in labels for lr in AXIS_RATES} and len(mini.rates) == 20
    assert min(AXIS_RATES) <= 0.005 < 0.05 <= max(AXIS_RATES)  # spans the paper's two rates
    for point in mini.grid:  # each family's paper rate is on the grid: that point is the core run
        label = make_method(point.method, **point.hparams).label
        if label in labels:
            assert (label, point.lr) in rates
    lengths = {(make_method(p.method, **p.hparams).label, p.steps) for p in mini.schedule}
    assert lengths == {(label, n) for label in labels for n in (300, 1000, 3000)} | {("Full", 10_000)}
    assert [p.steps for p in mini.schedule] == sorted((p.steps for p in mini.schedule), reverse=True)
    paper = {make_method(p.method, **p.hparams).label: p.lr for p in mini.grid}
    assert all(p.lr == paper[make_method(p.method, **p.hparams).label] for p in mini.schedule)


def test_axis_sweeps_override_rate_and_steps_and_share_the_core_runs(tmp_path):
    core = {r.name: r for r in plan_sweep("smoke", results_dir=tmp_path, device="cpu")}
    rates = plan_sweep("smoke", grid="rates", seeds=(0, 1), results_dir=tmp_path, device="cpu")
    assert len(rates) == 2 * len(get_preset("smoke").rates) and not any(tmp_path.iterdir())
    at_paper_rate = [r for r in rates if r.plan.seed == 0 and r.name in core]
    assert sorted(r.label for r in at_paper_rate) == ["Block exp. p=2", "Full", "Linear", "LoRA r=8", "Top-3"]
    paper_lr = {r.label: r.plan.train.lr for r in core.values()}
    moved = [r for r in rates if r.plan.train.lr != paper_lr[r.label]]
    assert len(moved) == len(rates) / 2  # smoke's rate grid: 0.005 and 0.05, one of them each row's own
    assert all(r.parameters()["lr"] == r.plan.train.lr and r.name not in core and
               r.name == f"{grid_key(r.name).rsplit('_', 1)[0]}_seed{r.plan.seed}_{r.name.rsplit('_', 1)[1]}"
               for r in moved)
    assert all(r.plan.forgetting_steps == () and r.parameters()["steps"] == "" for r in rates)

    schedule = plan_sweep("smoke", grid="schedule", results_dir=tmp_path, device="cpu")
    by_steps = {(r.label, r.plan.train.steps): r for r in schedule}
    assert by_steps[("Full", 24)].plan.forgetting_steps == (0, 3, 6, 12, 24)
    assert by_steps[("Full", 24)].parameters()["steps"] == 24 and by_steps[("Full", 24)].plan.train.warmup_steps >= 1
    assert by_steps[("Linear", 12)].plan.forgetting_steps == (0, 3, 6, 12)
    own = by_steps[("Full", 6)]  # at the preset's own length: the core run, probed as the core grid probes it
    assert own.name == "full_seed0" and own.parameters()["steps"] == ""
    assert own.plan.forgetting_steps == core["full_seed0"].plan.forgetting_steps
    assert grid_keys("smoke", "schedule") == {grid_key(r.name) for r in schedule}
    assert grid_keys("smoke", "rates") == {grid_key(r.name) for r in rates}
    with pytest.raises(ValueError, match=r"forgetting steps \[48\] lie beyond the longest schedule of the grid \(24"):
        plan_sweep("smoke", grid="schedule", forgetting_steps=(0, 48), results_dir=tmp_path)


def test_a_schedule_point_runs_through_the_notebook_at_its_own_length(tmp_path):
    summary = sweep("smoke", grid="schedule", only=["Linear"], results_dir=tmp_path, progress=False)
    assert len(summary.completed) == 2 and summary.ok
    made = {io.read_json(tmp_path / f"{name}.json")["config"]["train"]["steps"]: name for name in summary.completed}
    record = io.read_json(tmp_path / f"{made[12]}.json")
    assert record["config"]["forgetting_steps"] == [0, 3, 6, 12]
    curve = record["metrics"]["knn_over_steps"]
    assert [e["step"] for e in curve] == [0, 3, 6, 12]
    assert all(0 <= e["linear_head"] <= 100 for e in curve)  # both probes along the curve
    assert made[6] == "linear_seed0" and executed_cleanly(tmp_path / f"{made[12]}.ipynb", "linear")
