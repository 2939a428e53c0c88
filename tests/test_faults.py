"""The fault suite: each fault injected for real, then the same command run again.

For every fault the suite asserts that nothing recorded is lost (every valid record is still there,
byte for byte; every invalid one is kept under `invalid/`), that the message names the file and the
cause, and that re-running the same command completes the study. The faults: `kill -9` of a
local-executor job during its record write; a truncated record (and baseline); a record from
another schema; corrupted weights (sha256 mismatch); ENOSPC during a record write; a papermill
kernel that dies mid-run; two sweeps racing on one empty folder. The closing note counts them.

How each is produced: the job and its kernel are SIGKILLed (`kill -9`, from the test); the kernel
kills itself with SIGKILL; records, the baseline and the weights have their bytes cut or changed on
disk; two `vitcf sweep` processes are started at once. ENOSPC is a disk that is really full: the records are written onto a size-limited tmpfs
mounted for the test (`small_disk`; it needs root, and the test skips, saying why, where mounting is
not permitted), and just before the targeted record write a filler file is written onto it until
the file system answers ENOSPC (`fill_disk`). The record's own `write()` then fails with ENOSPC from
the operating system, nothing stubbed; removing the filler frees the space.

Timing hooks go into the run's kernel the way `failing_notebook` does: one cell after the
parameters. They decide only *when* a fault strikes: the record's fsync (for the kill), the record's
write (where the disk is filled). The fault itself is real.
"""

from __future__ import annotations

import errno
import functools
import inspect
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
import vitcf.engine.sweep
from vitcf.model import backbones
from vitcf.base import io
from vitcf.engine import records
from vitcf.model.checkpoints import save_state_dict, sha256
from vitcf.engine.claims import claim, release
from vitcf.engine.cli import main
from vitcf.engine.executors import ExecutorConfig
from vitcf.engine.sweep import NOTEBOOK, sweep

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


# A hook on the kernel's fsync of one record's temporary file (vitcf.base.io.write_json fsyncs it
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

# A hook on the kernel's write of one record (vitcf.base.io.write_json of <RUN>.json): `THEN` gets the
# real write_json, the path and the data, and decides what happens around the write.
ON_RECORD_WRITE = '''
import os as _os
import vitcf.base.io as _io
def _on_record_write(path, data, _run=RUN, _then=THEN, _write=_io.write_json):
    if _os.path.basename(str(path)) == _run + ".json":
        return _then(_write, path, data)
    return _write(path, data)
_io.write_json = _on_record_write
'''

DISK_SIZE = "8m"  # room for a smoke sweep's four runs (records, notebooks, kept weights) many times over


@pytest.fixture
def small_disk(tmp_path):
    """A size-limited tmpfs mounted at `tmp_path/disk` for the test (unmounted after it): a file system
    that really fills up. Mounting needs root (CAP_SYS_ADMIN); where it is not permitted the test
    skips, saying why. (`unshare` would not help: a mount namespace of a child is not seen by this
    process and its kernels, and this multi-threaded process cannot enter a new user namespace.)"""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("ENOSPC is produced on a size-limited tmpfs, and mounting one needs root (CAP_SYS_ADMIN); "
                    f"this test runs as uid {os.geteuid()}")
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE},mode=0755", "vitcf-faults", str(disk)],
                       check=True, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as err:
        cause = getattr(err, "stderr", None) or err
        pytest.skip(f"ENOSPC is produced on a size-limited tmpfs, and this machine does not let root mount one "
                    f"(no CAP_SYS_ADMIN, an unprivileged container?): mount -t tmpfs failed: {str(cause).strip()}")
    try:
        yield disk
    finally:
        if subprocess.run(["umount", str(disk)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "--lazy", str(disk)], check=True, capture_output=True)


def fill_disk(path):
    """Write zeros to the new file `path` until its file system is full (the write fails with ENOSPC);
    return the bytes written. Every block is then taken: the next write of a new file fails for real."""
    import errno
    import os
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    written = 0
    try:
        while True:
            written += os.write(fd, bytes(1 << 16))
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)
    return written


# --- units: what a record must be, and how a write fails ------------------------------------------

def test_scan_sorts_records_into_valid_and_invalid_ones(tmp_path):
    good = {"schema": records.SCHEMA, "run": "a", "preset": "smoke", "method": "linear", "family": "linear",
            "label": "Linear", "hparams": {}, "seed": 0, "trainable_params": 1,
            "config": {"selection": "x", "train": {"lr": 0.1}},
            "metrics": {"new_domain_accuracy": 1, "knn": {"20": 50.0}, "knn_baseline": {"20": 60.0},
                        "linear_head": {"after": 1, "baseline": 1}},
            "timings": {"train_seconds": 1, "eval_seconds": 1, "total_seconds": 1, "images_per_second": 1},
            "environment": {"hardware": "cpu"}}
    io.write_json(tmp_path / "a.json", good)
    text = json.dumps(good)
    (tmp_path / "b.json").write_text(text[:300])
    io.write_json(tmp_path / "c.json", good | {"schema": 0})
    io.write_json(tmp_path / "d.json", {k: v for k, v in good.items() if k != "timings"})
    (tmp_path / "e.json").write_text("[1, 2]")
    io.write_json(tmp_path / "f.json", good | {"metrics": good["metrics"] | {"knn": "oops"}})
    io.write_json(tmp_path / "g.json", good | {"metrics": good["metrics"] | {"new_domain_accuracy": 150}})
    io.write_json(tmp_path / "h.json", good | {"seed": 1.5})
    io.write_json(tmp_path / "baseline.json", {"broken": True})  # not a run record: not scanned as one
    io.write_json(tmp_path / "x.error.json", {"error": {}})
    valid, invalid = records.scan(tmp_path)
    assert [r["run"] for r in valid] == ["a"] and records.read_records(tmp_path) == valid
    reasons = {path.name: reason for path, reason in invalid}
    assert list(reasons) == ["b.json", "c.json", "d.json", "e.json", "f.json", "g.json", "h.json"]
    assert reasons["f.json"] == "field metrics.knn: 'oops' is not a mapping of k to a percentage"
    assert reasons["g.json"] == "field metrics.new_domain_accuracy: 150 is not a percentage in [0, 100]"
    assert reasons["h.json"] == "field seed: 1.5 is not an integer >= 0"
    assert reasons["b.json"].startswith("not valid JSON (") and "300 bytes" in reasons["b.json"]
    assert reasons["c.json"] == f"schema version 0, this code reads version {records.SCHEMA}"
    assert "timings.train_seconds" in reasons["d.json"] and "lacks field(s) the book reads" in reasons["d.json"]
    assert "JSON list" in reasons["e.json"]
    with pytest.raises(io.InvalidJSONError, match=f"{tmp_path / 'b.json'}: not valid JSON"):
        io.read_json(tmp_path / "b.json")
    with pytest.raises(records.InvalidRecordError, match=f"invalid record {tmp_path / 'b.json'}: not valid JSON"):
        records.check(tmp_path / "b.json")
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
        record = io.write_json(tmp_path / "r.json", {"a": 1})
        weights = save_state_dict(torch.nn.Linear(2, 2), tmp_path / "w.safetensors")
        assert claim(tmp_path / "r.lock") is None
        lock = tmp_path / "r.lock"
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (record, weights, lock)}
        release(lock)
    finally:
        os.umask(old)
    assert modes == {"r.json": 0o666 & ~mask, "w.safetensors": 0o666 & ~mask, "r.lock": 0o666 & ~mask}


def test_enospc_during_a_write_leaves_the_previous_file_and_no_partial_one(small_disk, tmp_path):
    folder, filler = small_disk / "records", small_disk / "filler"
    path = io.write_json(folder / "baseline.json", {"old": True})
    assert fill_disk(filler) > 0  # the disk is full now: the new record's write meets ENOSPC for real
    with pytest.raises(io.RecordWriteError) as err:
        io.write_json(path, {"new": True})
    fault()
    assert err.value.errno == errno.ENOSPC
    assert str(path) in str(err.value) and "No space left on device" in str(err.value)
    assert io.read_json(path) == {"old": True} and sorted(p.name for p in folder.iterdir()) == ["baseline.json"]
    filler.unlink()  # space freed: the same write now goes through
    assert io.read_json(io.write_json(path, {"new": True})) == {"new": True}
    assert sorted(p.name for p in folder.iterdir()) == ["baseline.json"]


def test_a_write_into_a_read_only_file_system_leaves_the_previous_file(small_disk):
    path = io.write_json(small_disk / "baseline.json", {"old": True})
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True, capture_output=True)
    try:  # read-only for root too: the file system refuses the write (EROFS), not a permission bit
        with pytest.raises(io.RecordWriteError, match=f"cannot write {path}: .*Read-only file system"):
            io.write_json(path, {"new": True})
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True, capture_output=True)
    assert io.read_json(path) == {"old": True}
    assert sorted(p.name for p in small_disk.iterdir()) == ["baseline.json"]


# --- the faults, for real -------------------------------------------------------------------------

def test_broken_records_a_full_disk_and_a_dead_kernel_cost_nothing_recorded(small_disk, tmp_path, capsys):
    """Truncated record and baseline, another schema, ENOSPC in a record write, a kernel SIGKILLed."""
    folder = small_disk / "results"  # on the small tmpfs, with the notebooks and weights written beside it
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

    # ... and in the kernels: Top-3's record write meets a full disk, LoRA r=8's kernel is SIGKILLed. At
    # Top-3's record write the kernel fills the tmpfs (`fill_disk`), so the write itself fails with ENOSPC;
    # it then removes the filler (space freed), as papermill's notebook and the error record need room.
    filler, filled = small_disk / "filler", tmp_path / "filled"
    source = ("import os as _os\n" + inspect.getsource(fill_disk) +
              "def _full(write, path, data):\n"
              f"    open({str(filled)!r}, 'w').write(str(fill_disk({str(filler)!r})))\n"
              "    try:\n        return write(path, data)\n"
              f"    finally:\n        _os.unlink({str(filler)!r})\n" +
              ON_RECORD_WRITE.replace("RUN", '"top_k_k3_seed0"').replace("THEN", "_full") +
              'if method == "lora" and hparams == \'{"r": 8}\':\n'
              "    import signal\n    _os.kill(_os.getpid(), signal.SIGKILL)\n")
    notebook = faulty_notebook(tmp_path, source)
    fault(2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(vitcf.engine.sweep, "sweep", functools.partial(sweep, notebook=notebook))
        assert main(command) == 1
    out = capsys.readouterr().out
    assert int(filled.read_text()) > 0 and not filler.exists()  # the disk was filled, then freed
    assert "2 done, 0 skipped, 2 failed" in out
    for name, reason in (("linear_seed0", "not valid JSON"), ("lora_r4_seed0", "schema version 0")):
        assert f"invalid record {folder / name}.json: {reason}" in out and "moved aside to " in out
    assert f"invalid record {folder / 'baseline.json'}: not valid JSON" in out
    assert f"computed the baseline probe {folder / 'baseline.json'}" in out
    full = io.read_json(folder / "top_k_k3_seed0.error.json")["error"]
    assert full["type"] in ("RecordWriteError", "OSError") and "No space left on device" in full["message"]
    assert f"cannot write {(folder / 'top_k_k3_seed0.json').resolve()}" in full["message"]
    assert "FAILED   Top-3 seed 0" in out and "No space left on device" in out
    assert not (folder / "top_k_k3_seed0.json").exists() and not list(folder.glob(".top_k_k3_seed0.json.*"))
    dead = io.read_json(folder / "lora_r8_seed0.error.json")["error"]
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
    io.write_json(weights_dir / "mini.json", {"weights": {"file": weights.name, "sha256": expected}})
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


# --- bad input and unreadable caches: refused or healed before compute is wasted ---------------------

def test_a_diverging_run_fails_naming_step_loss_and_rate_and_records_nothing(tmp_path, monkeypatch, capsys):
    from vitcf.engine import train

    fault()
    real = train.train_step
    calls = []

    def diverging(*args, **kwargs):  # the second update's loss is NaN, as a run at a rate far too high gets
        calls.append(1)
        loss = real(*args, **kwargs)
        return loss * float("nan") if len(calls) >= 2 else loss

    monkeypatch.setattr(train, "train_step", diverging)
    folder = tmp_path / "smoke"
    assert main(["run", "--preset", "smoke", "--method", "full", "--lr", "5", "--results-dir", str(folder),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "training diverged: the loss is nan at step 2 of 6 (learning rate" in err and "base rate 5)" in err
    assert not list(folder.glob("full*.json"))  # no record of a run that diverged


def test_no_record_holds_nan_or_an_infinity(tmp_path):
    fault()
    path = tmp_path / "run.json"
    with pytest.raises(ValueError, match=r"cannot write .*run.json: .*\(metrics.knn.20 is nan\); nothing was written"):
        io.write_json(path, {"metrics": {"knn": {"20": float("nan")}}})
    with pytest.raises(ValueError, match=r"metrics.curve.1 is inf"):
        io.write_json(path, {"metrics": {"curve": [1.0, float("inf")]}})
    assert not path.exists()


def test_a_folder_it_cannot_write_fails_before_the_baseline_probe(tmp_path, monkeypatch, capsys):
    import tempfile

    from vitcf.engine import study

    fault()

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", read_only)
    monkeypatch.setattr(study, "train_planned", lambda *a, **k: pytest.fail("computed before checking the folder"))
    folder = tmp_path / "smoke"
    assert main(["run", "--preset", "smoke", "--method", "linear", "--results-dir", str(folder), "--quiet"]) == 2
    assert f"cannot write records in {folder}: Read-only file system" in capsys.readouterr().err


def test_an_unreadable_baseline_cache_is_moved_aside_and_made_again(tmp_path, capsys):
    from vitcf.engine.study import cached_baseline

    fault(2)
    folder = tmp_path / "smoke"
    folder.mkdir()
    path, head = folder / "baseline.json", folder / "baseline_head.safetensors"
    io.write_json(path, {"key": "k", "width": 4, "num_classes": 3})
    save_state_dict(torch.nn.Linear(4, 3), head)
    assert cached_baseline(path, head, "k")[1].weight.shape == (3, 4)  # a sound cache is read
    head.write_bytes(head.read_bytes()[:20])  # truncated
    assert cached_baseline(path, head, "k") is None
    assert not path.exists() and not head.exists()
    kept = sorted(p.name for p in (folder / records.INVALID_DIR).iterdir() if not p.name.endswith(".txt"))
    assert [name.split(".")[0] for name in kept] == ["baseline", "baseline_head"]
    assert "baseline_head.safetensors: unreadable" in capsys.readouterr().out
    path.write_text("{not json")  # a corrupt record with a sound head: the same cure
    save_state_dict(torch.nn.Linear(4, 3), head)
    assert cached_baseline(path, head, "k") is None and not path.exists()
    recovered(["baseline"])


def test_ctrl_c_in_a_local_sweep_cancels_its_job_frees_its_claim_and_exits_130(tmp_path, monkeypatch, capsys):
    import types

    import vitcf.engine.executors as executors
    import vitcf.engine.sweep as sweeps

    fault()
    folder = tmp_path / "results"
    lock, pressed = folder / "linear_seed0.lock", []
    # The job's run cannot finish before Ctrl-C, however slow the machine: its notebook waits first.
    monkeypatch.setitem(sweeps.sweep.__kwdefaults__, "notebook", faulty_notebook(tmp_path, "import time\ntime.sleep(300)"))

    def sleep(seconds):  # Ctrl-C while the sweep waits for its job, once the job holds its run's claim
        if not pressed and lock.exists():
            pressed.append(time.monotonic())
            raise KeyboardInterrupt
        time.sleep(seconds)

    monkeypatch.setattr(executors, "time", types.SimpleNamespace(sleep=sleep, monotonic=time.monotonic))
    code = main(["sweep", "--preset", "smoke", "--only", "linear", "--results-dir", str(folder), "--quiet",
                 "--executor", "local", "--jobs", "1"])
    err = capsys.readouterr().err
    assert pressed and code == 130 and err.startswith("vitcf sweep: interrupted;") and err.count("\n") == 1
    assert not lock.exists() and not (folder / "linear_seed0.json").exists()  # claim freed, nothing recorded
    assert not list(folder.glob("*.lock"))  # the baseline's claim too


def test_ctrl_c_prints_one_line_and_exits_130(monkeypatch, capsys):
    import vitcf.engine.cli

    fault()

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(vitcf.engine.cli, "_params", interrupted)
    assert main(["params"]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vitcf params: interrupted;") and "Traceback" not in err
