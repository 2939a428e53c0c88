"""benchmarks/gpu_timings.py: the document of its CPU smoke run, and refusals that write nothing."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "gpu_timings.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_timings", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_timings") / "smoke.json"
    env = os.environ | {"OMP_NUM_THREADS": "1"}  # a good neighbour to the other xdist worker
    run = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(out)], capture_output=True,
                         text=True, timeout=900, env=env, cwd=REPO)
    assert run.returncode == 0, run.stderr[-6000:]
    return json.loads(out.read_text()), run.stderr


def test_the_smoke_run_times_the_real_commands_and_reads_what_they_wrote(smoke):
    doc, log = smoke
    assert doc["smoke"] and doc["preset"] == "smoke" and doc["gpu"] is None
    pretrain = doc["pretrain"]
    assert pretrain["status"] == "finished" and pretrain["command"].startswith("vitcf pretrain --preset smoke")
    assert pretrain["images"] == 256 and pretrain["epochs"] == 1 and pretrain["images_per_second"] > 0
    assert 0 < pretrain["train_seconds"] < pretrain["wall_seconds"]
    [run] = doc["runs"]  # smoke: one run, the core grid's first
    assert run["status"] == "finished" and run["includes_baseline"] and run["method"] == "full"
    assert run["timings"]["images_per_second"] > 0 and run["timings"]["total_seconds"] < run["wall_seconds"]
    assert 0 <= run["new_domain_accuracy"] <= 100
    assert "vitcf run --preset smoke --method full" in log  # the table names each command


def test_the_shipped_weights_are_left_alone(smoke):
    card = json.loads((REPO / "vitcf" / "weights" / "mini.json").read_text())
    assert card["environment"]["device"] == "cpu"  # the pre-training on the GPU wrote to a scratch folder
    assert not list((REPO / "vitcf" / "weights").glob("smoke*"))


@pytest.mark.parametrize("argv, message", [
    (["--device", "cpu"], "--device 'cpu': this benchmark times a GPU"),
    (["--smoke", "--run-timeout", "0"], "timeouts must be positive seconds"),
])
def test_bad_arguments_fail_before_any_work(tmp_path, capsys, argv, message):
    out = tmp_path / "out.json"
    with pytest.raises(SystemExit) as exit_:
        load_script().main([*argv, "--out", str(out)])
    assert exit_.value.code == 2 and message in capsys.readouterr().err and not out.exists()


def test_without_a_gpu_it_refuses_and_points_at_smoke(tmp_path, capsys, monkeypatch):
    script = load_script()
    monkeypatch.setattr(script.torch.cuda, "is_available", lambda: False)
    out = tmp_path / "out.json"
    assert script.main(["--out", str(out)]) == 2
    assert "--smoke" in capsys.readouterr().err and not out.exists()


def test_the_reproducibility_note_reads_a_gpu_record_and_says_when_there_is_none(tmp_path):
    from vitcf.book import setup_notes

    assert "No GPU timing of the mini commands is recorded" in setup_notes.gpu_timings_note(tmp_path)
    folder = tmp_path / "benchmarks" / "results"
    folder.mkdir(parents=True)
    doc = {"gpu": "NVIDIA H200", "smoke": False, "date": "2026-12-04T10:00:00+00:00",
           "pretrain": {"wall_seconds": 150.0, "status": "timed out after 150 s", "epochs_finished": 9,
                        "train_seconds": 131.2},
           "runs": [{"method": "full", "label": "Full", "wall_seconds": 21.4, "status": "finished"},
                    {"method": "lora", "wall_seconds": 60.0, "status": "timed out after 60 s"}]}
    (folder / "gpu_timings.json").write_text(json.dumps(doc))
    note = setup_notes.gpu_timings_note(tmp_path)
    assert note.startswith("On one NVIDIA H200 (2026-12-04), `vitcf pretrain --preset mini` took 2.5 minutes "
                           "(timed out after 150 s, 9 epochs finished in 131 s of training)")
    assert "Full 21 s; lora 60 s (timed out after 60 s) of wall time" in note
    (folder / "gpu_timings.json").write_text(json.dumps(doc | {"smoke": True}))
    assert "No GPU timing" in setup_notes.gpu_timings_note(tmp_path)  # a smoke run's numbers mean nothing
