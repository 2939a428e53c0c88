"""The fault suite: each fault injected for real, then the same command run again.

For every fault the suite asserts that nothing recorded is lost (every valid record is still there,
byte for byte; every invalid one is kept under `invalid/`), that the message names the file and the
cause, and that re-running the same command completes the study. The faults: `kill -9` of a
local-executor job during its record write; a truncated record (and baseline); a record from
another schema; corrupted weights (sha256 mismatch); ENOSPC during a record write; a papermill
kernel that dies mid-run; two sweeps racing on one empty folder. The closing note counts them.

Timing hooks go into the run's kernel the way `failing_notebook` does: one cell after the
parameters. They decide *when* a fault strikes (the record's fsync); the fault itself is real: the
kernel and the job are SIGKILLed, the kernel's fsync fails with ENOSPC, the weights' bytes change.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest
import torch

import vitcf
import vitcf.sweep
from vitcf import backbones, records
from vitcf.checkpoints import save_state_dict, sha256
from vitcf.claims import claim, release
from vitcf.cli import main
from vitcf.executors import ExecutorConfig
from vitcf.sweep import NOTEBOOK, sweep

LEDGER = {"faults injected": 0, "runs recovered": 0, "records lost": 0}


class _ClosingNote:
    def pytest_terminal_summary(self, terminalreporter):
        terminalreporter.write_sep("-", "fault suite")
        terminalreporter.write_line(", ".join(f"{key}: {value}" for key, value in LEDGER.items()))


@pytest.fixture(scope="module", autouse=True)
def closing_note(request):
    note = _ClosingNote()
    request.config.pluginmanager.register(note, "vitcf-fault-suite")
    yield
    assert LEDGER["records lost"] == 0, LEDGER


def fault(count: int = 1) -> None:
    LEDGER["faults injected"] += count


def recovered(names) -> None:
    LEDGER["runs recovered"] += len(list(names))


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every valid record in `folder` (runs and baseline), by file name, as bytes."""
    kept = {}
    for path in sorted(folder.glob("*.json")):
        try:
            records.check(path)
        except (OSError, ValueError):
            continue
        kept[path.name] = path.read_bytes()
    return kept


def lost(before: dict[str, bytes], folder: Path, invalid: dict[str, bytes] = {}) -> list[str]:  # noqa: B006
    """Records of `before` that are gone or changed, and invalid files of `invalid` not kept aside."""
    gone = [name for name, data in before.items()
            if not (folder / name).is_file() or (folder / name).read_bytes() != data]
    aside = [p.read_bytes() for p in (folder / records.INVALID_DIR).glob("*.json")]
    gone += [name for name, data in invalid.items() if data not in aside]
    LEDGER["records lost"] += len(gone)
    return gone


def faulty_notebook(tmp_path: Path, source: str) -> Path:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(source))
    path = tmp_path / "faulty.ipynb"
    nbformat.write(nb, path)
    return path


# A hook on the kernel's fsync of one record's temporary file (vitcf.records.write_json fsyncs it
# before renaming it into place): the moment a record is being written.
ON_RECORD_FSYNC = '''
import os as _os
_fsync = _os.fsync
def _on_record_fsync(fd, _run=RUN, _then=THEN):
    if _os.path.basename(_os.readlink(f"/proc/self/fd/{fd}")).startswith("." + _run + ".json."):
        _then(fd)
    return _fsync(fd)
_os.fsync = _on_record_fsync
'''


# --- units: what a record must be, and how a write fails ------------------------------------------

def test_scan_sorts_records_into_valid_and_invalid_ones(tmp_path):
    good = {"schema": records.SCHEMA, "run": "a", "preset": "smoke", "method": "linear", "family": "linear",
            "label": "Linear", "hparams": {}, "seed": 0, "trainable_params": 1,
            "config": {"selection": "x", "train": {"lr": 0.1}},
            "metrics": {"new_domain_accuracy": 1, "knn": {}, "knn_baseline": {},
                        "linear_head": {"after": 1, "baseline": 1}},
            "timings": {"train_seconds": 1, "eval_seconds": 1, "total_seconds": 1, "images_per_second": 1},
            "environment": {"hardware": "cpu"}}
    records.write_json(tmp_path / "a.json", good)
    text = json.dumps(good)
    (tmp_path / "b.json").write_text(text[:300])
    records.write_json(tmp_path / "c.json", good | {"schema": 0})
    records.write_json(tmp_path / "d.json", {k: v for k, v in good.items() if k != "timings"})
    (tmp_path / "e.json").write_text("[1, 2]")
    records.write_json(tmp_path / "baseline.json", {"broken": True})  # not a run record: not scanned as one
    records.write_json(tmp_path / "x.error.json", {"error": {}})
    valid, invalid = records.scan(tmp_path)
    assert [r["run"] for r in valid] == ["a"] and records.read_records(tmp_path) == valid
    reasons = {path.name: reason for path, reason in invalid}
    assert list(reasons) == ["b.json", "c.json", "d.json", "e.json"]
    assert reasons["b.json"].startswith("not valid JSON (") and "300 bytes" in reasons["b.json"]
    assert reasons["c.json"] == f"schema version 0, this code reads version {records.SCHEMA}"
    assert "timings.train_seconds" in reasons["d.json"] and "lacks field(s) the book reads" in reasons["d.json"]
    assert "JSON list" in reasons["e.json"]
    with pytest.raises(records.InvalidRecordError, match=f"invalid record {tmp_path / 'b.json'}: not valid JSON"):
        records.read_json(tmp_path / "b.json")
    with pytest.raises(records.InvalidRecordError, match="lacks field.* key"):
        records.check(tmp_path / "baseline.json")
    aside = records.move_aside(tmp_path / "b.json", reasons["b.json"])
    assert aside.parent == tmp_path / "invalid" and aside.read_text() == text[:300]
    assert not (tmp_path / "b.json").exists()
    assert "not valid JSON" in aside.with_name(aside.name + ".reason.txt").read_text()
    assert records.scan(tmp_path / "none") == ([], [])


@pytest.mark.parametrize("mask", [0o002, 0o022, 0o077])
def test_records_checkpoints_and_claims_get_the_umask_permissions(tmp_path, mask):
    old = os.umask(mask)
    try:
        record = records.write_json(tmp_path / "r.json", {"a": 1})
        weights = save_state_dict(torch.nn.Linear(2, 2), tmp_path / "w.safetensors")
        assert claim(tmp_path / "r.lock") is None
        lock = tmp_path / "r.lock"
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (record, weights, lock)}
        release(lock)
    finally:
        os.umask(old)
    assert modes == {"r.json": 0o666 & ~mask, "w.safetensors": 0o666 & ~mask, "r.lock": 0o666 & ~mask}


def test_enospc_during_a_write_leaves_the_previous_file_and_no_partial_one(tmp_path, monkeypatch):
    path = records.write_json(tmp_path / "baseline.json", {"old": True})

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(records.RecordWriteError) as err:
        records.write_json(path, {"new": True})
    fault()
    assert err.value.errno == errno.ENOSPC
    assert str(path) in str(err.value) and "No space left on device" in str(err.value)
    assert records.read_json(path) == {"old": True} and sorted(p.name for p in tmp_path.iterdir()) == ["baseline.json"]
    monkeypatch.undo()
    if os.geteuid() != 0:  # root writes into a read-only folder anyway
        tmp_path.chmod(0o555)
        try:
            with pytest.raises(records.RecordWriteError, match=f"cannot write {path}: Permission denied"):
                records.write_json(path, {"new": True})
        finally:
            tmp_path.chmod(0o755)
        assert records.read_json(path) == {"old": True}


# --- the faults, for real -------------------------------------------------------------------------

def test_broken_records_a_full_disk_and_a_dead_kernel_cost_nothing_recorded(tmp_path, capsys):
    """Truncated record and baseline, another schema, ENOSPC in a record write, a kernel SIGKILLed."""
    folder = tmp_path / "results"
    command = ["sweep", "--preset", "smoke", "--only", "linear", "LoRA r=4", "Top-3", "LoRA r=8",
               "--results-dir", str(folder), "--quiet"]
    first = sweep("smoke", only=["linear", "LoRA r=4"], results_dir=folder, progress=False)
    assert first.completed == ["linear_seed0", "lora_r4_seed0"]
    before = snapshot(folder)

    # the faults on disk: a record and the baseline cut to their first 300 bytes, a record of schema 0
    for name in ("linear_seed0.json", "baseline.json"):
        path = folder / name
        path.write_bytes(path.read_bytes()[:300])
    other = json.loads(before["lora_r4_seed0.json"]) | {"schema": 0}
    (folder / "lora_r4_seed0.json").write_text(json.dumps(other))
    broken = ("linear_seed0.json", "baseline.json", "lora_r4_seed0.json")
    invalid = {name: (folder / name).read_bytes() for name in broken}
    fault(3)
    valid, found = records.scan(folder)  # what the book's pages show: no exception, the bad ones named
    assert valid == [] and [(p.name, r.split(" (")[0]) for p, r in found] == [
        ("linear_seed0.json", "not valid JSON"), ("lora_r4_seed0.json", "schema version 0, this code reads version 1")]

    # ... and in the kernels: Top-3's record write meets a full disk, LoRA r=8's kernel is SIGKILLed
    hooks = ON_RECORD_FSYNC.replace("RUN", '"top_k_k3_seed0"').replace("THEN", "_full")
    source = ("import errno as _errno\n"
              "def _full(fd):\n    raise OSError(_errno.ENOSPC, _os.strerror(_errno.ENOSPC))\n"
              "import os as _os\n" + hooks +
              'if method == "lora" and hparams == \'{"r": 8}\':\n'
              "    import signal\n    _os.kill(_os.getpid(), signal.SIGKILL)\n")
    notebook = faulty_notebook(tmp_path, source)
    fault(2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(vitcf.sweep, "sweep", functools.partial(sweep, notebook=notebook))
        assert main(command) == 1
    out = capsys.readouterr().out
    assert "2 done, 0 skipped, 2 failed" in out
    for name, reason in (("linear_seed0", "not valid JSON"), ("lora_r4_seed0", "schema version 0")):
        assert f"invalid record {folder / name}.json: {reason}" in out and "moved aside to " in out
    assert f"invalid record {folder / 'baseline.json'}: not valid JSON" in out
    assert f"computed the baseline probe {folder / 'baseline.json'}" in out
    full = records.read_json(folder / "top_k_k3_seed0.error.json")["error"]
    assert full["type"] in ("RecordWriteError", "OSError") and "No space left on device" in full["message"]
    assert f"cannot write {(folder / 'top_k_k3_seed0.json').resolve()}" in full["message"]
    assert "FAILED   Top-3 seed 0" in out and "No space left on device" in out
    assert not (folder / "top_k_k3_seed0.json").exists() and not list(folder.glob(".top_k_k3_seed0.json.*"))
    dead = records.read_json(folder / "lora_r8_seed0.error.json")["error"]
    assert dead["type"] == "DeadKernelError" and f"(running {folder / 'lora_r8_seed0.ipynb'})" in out
    assert lost({}, folder, invalid) == []  # the three invalid files are kept under invalid/, unchanged
    recovered(["linear_seed0", "lora_r4_seed0"])
    assert records.scan(folder)[1] == []

    # the same command again, with the real notebook: the two failed runs are made, nothing else
    kept = snapshot(folder)
    assert main(command) == 0
    out = capsys.readouterr().out
    assert "2 done, 2 skipped, 0 failed" in out and "baseline" not in out  # read, not computed again
    assert lost(kept, folder) == [] and not list(folder.glob("*.error.json"))
    recovered(["top_k_k3_seed0", "lora_r8_seed0"])
    assert {r["run"] for r in records.read_records(folder)} == {"linear_seed0", "lora_r4_seed0", "top_k_k3_seed0",
                                                                "lora_r8_seed0"}
    assert main(command) == 0 and "0 done, 4 skipped, 0 failed" in capsys.readouterr().out


def kill_during_record_write(marker: Path, killed: list, timeout_s: float = 900) -> None:
    """SIGKILL the job and its kernel named in `marker` once the kernel is inside its record write."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if marker.exists() and marker.read_text().endswith("\n"):
            kernel, job = (int(x) for x in marker.read_text().split())
            for pid in (job, kernel):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            killed.append((job, kernel))
            return
        time.sleep(0.02)


def test_kill_9_of_a_local_job_during_its_record_write(tmp_path):
    folder, marker = tmp_path / "results", tmp_path / "in-record-write"
    then = (f"def _stall(fd):\n    open({str(marker)!r}, 'w').write(f'{{_os.getpid()}} {{_os.getppid()}}\\n')\n"
            "    import time\n    time.sleep(600)\n")
    notebook = faulty_notebook(tmp_path, "import os as _os\n" + then +
                               ON_RECORD_FSYNC.replace("RUN", '"linear_seed0"').replace("THEN", "_stall"))
    killed: list = []
    killer = threading.Thread(target=kill_during_record_write, args=(marker, killed), daemon=True)
    killer.start()
    summary = sweep("smoke", only="linear", results_dir=folder, progress=False, executor=ExecutorConfig("local"),
                    notebook=notebook)
    killer.join(timeout=5)
    fault()
    assert killed and summary.failed == ["linear_seed0"]
    message = summary.outcomes[0].message
    assert "UncompletedJobError" in message and str(folder / "linear_seed0.json") in message
    assert not (folder / "linear_seed0.json").exists()  # no partial record under the record's name
    assert list(folder.glob(".linear_seed0.json.*.tmp"))  # the write the kill interrupted
    assert not (folder / "linear_seed0.lock").exists() and not (folder / "baseline.lock").exists()
    before = snapshot(folder)
    assert "baseline.json" in before

    again = sweep("smoke", only="linear", results_dir=folder, progress=False, executor=ExecutorConfig("local"))
    assert again.completed == ["linear_seed0"] and again.ok
    assert not list(folder.glob(".linear_seed0.json.*.tmp")) and not (folder / "linear_seed0.error.json").exists()
    assert lost(before, folder) == []
    recovered(again.completed)


def test_two_sweeps_racing_on_one_empty_folder(tmp_path):
    folder = tmp_path / "results"
    argv = [str(Path(sys.executable).parent / "vitcf"), "sweep", "--preset", "smoke", "--only", "linear",
            "LoRA r=4", "--results-dir", str(folder), "--quiet"]
    sweeps = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=1200)[0] for p in sweeps]
    fault()
    assert [p.returncode for p in sweeps] == [0, 0], outs
    text = "\n".join(outs)
    assert text.count("computed the baseline probe") == 1, text  # exactly one computed it
    assert text.count("done     ") == 2, text  # each run made once, by one of them
    for label in ("Linear", "LoRA r=4"):
        assert sum(f"done     {label} seed 0" in out for out in outs) == 1
    assert {r["run"] for r in records.read_records(folder)} == {"linear_seed0", "lora_r4_seed0"}
    before = snapshot(folder)
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and "0 done, 2 skipped, 0 failed" in result.stdout
    assert lost(before, folder) == []


def test_corrupted_weights_are_refused_naming_the_file_and_both_hashes(tmp_path, monkeypatch, capsys):
    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    torch.manual_seed(3)
    weights = save_state_dict(vitcf.create_backbone("mini"), weights_dir / "mini.safetensors")
    expected = sha256(weights)
    records.write_json(weights_dir / "mini.json", {"weights": {"file": weights.name, "sha256": expected}})
    monkeypatch.setenv(backbones.WEIGHTS_ENV, str(weights_dir))
    folder = tmp_path / "results"
    command = ["run", "--preset", "mini", "--method", "linear", "--steps", "2", "--forgetting-steps",
               "--results-dir", str(folder), "--device", "cpu", "--quiet"]

    good = weights.read_bytes()
    corrupt = bytearray(good)
    corrupt[-1] ^= 0xFF  # one bit of one weight
    weights.write_bytes(bytes(corrupt))
    fault()
    assert main(command) == 2
    err = capsys.readouterr().err
    assert str(weights) in err and f"(sha256 {sha256(weights)})" in err and f"(sha256 {expected})" in err
    assert str(weights_dir / "mini.json") in err and not folder.exists()  # nothing computed, nothing written

    weights.write_bytes(good)  # restored (git checkout would)
    assert main(command) == 0
    (record,) = records.read_records(folder)
    assert record["config"]["backbone_weights"]["sha256"] == expected
    recovered([record["run"]])
