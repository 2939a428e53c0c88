"""The typed run record: every committed record reads through it, a bad field is refused by name, and the
environment stamp fills its part."""

import copy
import json
import subprocess
from pathlib import Path

import pytest
import torch

from vitcf.base import env, io
from vitcf.engine import records
from vitcf.engine.record import (ABSENT, Environment, LinearHead, RecordFieldError, RunRecord, required,
                                 type_problem)

REPO = Path(__file__).resolve().parent.parent
COMMITTED = sorted(path for preset in ("mini", "mini-glyphs") for path in (REPO / "results" / preset).glob("*.json")
                   if records.kind_of(path) == "run" and not path.name.endswith(".error.json"))


def committed() -> dict:
    """A committed run record, as read from its file."""
    return io.read_json(REPO / "results" / "mini" / "linear_seed0.json")


def test_every_committed_run_record_reads_through_the_dataclass_and_back():
    assert len(COMMITTED) > 100  # the book's records are there
    for path in COMMITTED:
        record = io.read_json(path)
        typed = RunRecord.from_dict(record)
        assert typed.to_dict() == record, path  # same keys and values: nothing lost, nothing added
        assert isinstance(typed.metrics.linear_head, LinearHead) and typed.run == path.stem
        assert records.check(path) == record


def _written(tmp_path: Path, record: dict, text: str | None = None) -> Path:
    path = tmp_path / f"{record['run']}.json"
    path.write_text(text if text is not None else json.dumps(record))
    return path


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: r["metrics"].update(knn="oops"), "field metrics.knn: 'oops' is not a mapping of k to a percentage"),
    (lambda r: r["metrics"]["linear_head"].update(after=float("nan")),
     "field metrics.linear_head.after: nan is not a percentage in [0, 100]"),
    (lambda r: r.update(seed=True), "field seed: True is not an integer >= 0"),
    (lambda r: r["metrics"]["knn"].update({"20": float("inf")}), "field metrics.knn: {'20': inf} are not percentages"),
    (lambda r: r["config"]["train"].update(lr="0.1"), "field config.train.lr: '0.1' is not a finite number >= 0"),
    (lambda r: r["environment"].update(hardware=None), "field environment.hardware: None is not text"),
    (lambda r: r.update(timings="fast"), "field timings: 'fast' is not an object"),
    (lambda r: r["metrics"]["instance"].update(after=[1]), "field metrics.instance.after: [1] is not a mapping"),
    (lambda r: r["metrics"]["linear_head"].pop("after"), "lacks field(s) the book reads: metrics.linear_head.after"),
    (lambda r: r["config"]["train"].pop("lr"), "lacks field(s) the book reads: config.train.lr"),
])
def test_a_bad_field_is_refused_on_read_naming_it(tmp_path, change, message):
    record = committed()
    change(record)
    # json.dumps writes NaN and Infinity as a careless writer would (io.write_json refuses them)
    path = _written(tmp_path, record)
    with pytest.raises(records.InvalidRecordError, match=f"invalid record {path}: ") as err:
        records.check(path)
    assert err.value.reason.startswith(message)
    with pytest.raises(RecordFieldError):
        RunRecord.from_dict(json.loads(path.read_text()))
    valid, invalid = records.scan(tmp_path)
    assert valid == [] and invalid == [(path, err.value.reason)]


def test_optional_fields_may_be_absent_or_null_and_are_left_out_when_absent():
    record = committed()
    for key in ("instance", "drift", "correct", "selection_accuracy"):
        del record["metrics"][key]
    del record["history"]
    record["config"]["new_domain_data"] = None
    record["environment"] = {"hardware": "cpu"}
    typed = RunRecord.from_dict(record)
    assert typed.metrics.instance is ABSENT and typed.config.new_domain_data is None
    assert typed.to_dict() == record and "instance" not in typed.to_dict()["metrics"]
    assert typed.environment == Environment(hardware="cpu")
    # keys the class does not name are left alone: the record stays valid (the book reads it as a dict)
    assert records.problem(record | {"note": "made by hand"}) is None


def test_the_required_fields_are_those_the_book_reads():
    assert set(required(RunRecord)) == {
        "schema", "run", "preset", "method", "family", "label", "hparams", "seed", "trainable_params",
        "config.selection", "config.train.lr", "metrics.new_domain_accuracy", "metrics.knn", "metrics.knn_baseline",
        "metrics.linear_head.after", "metrics.linear_head.baseline", "timings.train_seconds", "timings.eval_seconds",
        "timings.total_seconds", "timings.images_per_second", "environment.hardware"}
    assert records.problem({"schema": records.SCHEMA}).startswith("lacks field(s) the book reads: run, preset, ")
    with pytest.raises(ValueError, match="unknown field type 'size'; allowed: text, count"):
        type_problem(1, "size")
    with pytest.raises(RecordFieldError, match="holds a JSON list, not an object"):
        RunRecord.from_dict([])


def test_a_record_built_from_the_dataclasses_is_its_dict_form():
    record = committed()
    typed = RunRecord.from_dict(copy.deepcopy(record))
    rebuilt = RunRecord(**{name: getattr(typed, name) for name in record})
    assert rebuilt == typed and rebuilt.to_dict() == record
    assert list(rebuilt.to_dict()["metrics"]) == ["new_domain_accuracy", "selection_accuracy", "best_step", "knn",
                                                  "knn_baseline", "forgetting", "linear_head", "instance",
                                                  "knn_over_steps", "full_probe_over_steps", "drift", "correct"]


def test_the_environment_stamp_fills_the_records_environment():
    stamp = env.environment(torch.device("cpu"))
    assert Environment.from_dict(stamp).to_dict() == stamp
    assert list(stamp) == ["device", "hardware", "python", "versions", "git_commit", "finished_at"]
    assert stamp["device"] == "cpu" and stamp["hardware"].endswith(" torch threads")
    assert set(stamp["versions"]) == set(env.LIBRARIES)
    assert torch.__version__.startswith(stamp["versions"]["torch"])  # less a local build tag ("+cpu")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    if head.returncode == 0:  # a checkout: the stamp names its commit
        assert env.git_commit().removesuffix("-dirty") == head.stdout.strip()
