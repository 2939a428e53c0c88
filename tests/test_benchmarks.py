"""benchmarks/book_budget.py: which steps a budget keeps, which it refuses to time, and how it names paths."""

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_the_glyph_budget_refuses_a_folder_holding_its_own_runs_but_not_the_axes(tmp_path):
    spec = importlib.util.spec_from_file_location("book_budget", REPO / "benchmarks" / "book_budget.py")
    budget = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(budget)
    folder = tmp_path / "mini-glyphs"
    folder.mkdir()
    (folder / "full_seed0_79ba88c8b0.json").write_text("{}")  # an axis run: not the glyph job's
    assert budget.already_recorded("glyphs", folder) == [] and budget.reused_steps("glyphs", tmp_path) == []
    (folder / "lora_r8_seed2.json").write_text("{}")
    (folder / "baseline.json").write_text("{}")
    assert budget.already_recorded("glyphs", folder) == ["lora_r8_seed2.json", "baseline.json"]
    with pytest.raises(SystemExit, match="already holds lora_r8_seed2.json, baseline.json; a budget is measured"):
        budget.reused_steps("glyphs", tmp_path)


def test_a_kept_step_keeps_its_earlier_timing_and_only_the_others_run(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("book_budget", REPO / "benchmarks" / "book_budget.py")
    budget = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(budget)
    out = tmp_path / "glyphs-axes_budget.json"
    out.write_text(json.dumps({"steps": [{"step": "glyphs schedule axis", "command": "c", "seconds": 1450.8}],
                               "environment": {"finished_at": "2026-12-06T09:36:30+00:00"}}))
    kept = budget.kept_steps("glyphs-axes", ["glyphs schedule axis"], out)
    assert kept["glyphs schedule axis"]["seconds"] == 1450.8
    assert "2026-12-06T09:36:30" in kept["glyphs schedule axis"]["timed_by"]
    ran = []
    monkeypatch.setattr(budget, "_timed", lambda name, commands, env: ran.append(name) or {"step": name, "seconds": 1.0})
    steps = budget.job_steps("glyphs-axes", tmp_path, tmp_path, tmp_path, {}, kept=kept)
    assert [s["step"] for s in steps] == ["glyphs schedule axis", "glyphs rate axis, seed 0"]
    assert ran == ["glyphs rate axis, seed 0"] and steps[0]["seconds"] == 1450.8
    with pytest.raises(SystemExit, match=r"times no step \['glyphs rate axis'\]; it has: glyphs schedule axis"):
        budget.kept_steps("glyphs-axes", ["glyphs rate axis"], out)


def test_budget_records_name_paths_inside_the_checkout_relative_to_it():
    spec = importlib.util.spec_from_file_location("book_budget", REPO / "benchmarks" / "book_budget.py")
    budget = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(budget)
    command = f"{REPO}/.venv/bin/vitcf sweep --preset mini --results-dir {REPO}/results/mini"
    assert budget.shown(command) == ".venv/bin/vitcf sweep --preset mini --results-dir results/mini"
    assert budget.shown(f"jupyter-book build {REPO} -W") == "jupyter-book build . -W"
    assert budget.shown("/tmp/elsewhere/x") == "/tmp/elsewhere/x"
