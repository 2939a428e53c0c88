"""Reversibility: LoRA and block expansion scored adapted, merged and removed, on both domains."""

import pytest

from vitcf.engine.analyses import interpolation, reversibility
from vitcf.engine.study import run


@pytest.mark.parametrize(("method", "hparams", "states"), [
    ("lora", {"r": 8}, {"adapted", "merged", "removed"}),
    ("block_expansion", {"p": 2}, {"adapted", "removed"}),
])
def test_removing_what_was_learnt_gives_back_the_baseline(tmp_path, method, hparams, states):
    record = reversibility("smoke", method, hparams, seed=0, results_dir=tmp_path, progress=False)
    assert set(record["states"]) == states
    assert (tmp_path / "analyses" / f"reversibility_{record['run']}.json").is_file()
    adapted, removed = record["states"]["adapted"], record["states"]["removed"]
    # removed: the pre-trained backbone bit for bit, so the probe scores exactly the baseline
    assert removed["knn"] == record["baseline"]["knn"]
    assert removed["linear_head"] == record["baseline"]["linear_head"]
    # adapted: exactly what the study's own run of the same configuration and seed records
    plain = run("smoke", method, hparams, seed=0, results_dir=tmp_path / "plain", progress=False, forgetting_steps=())
    assert adapted["knn"] == {str(k): v for k, v in plain["metrics"]["knn"].items()}
    assert adapted["new_domain_accuracy"] == plain["metrics"]["new_domain_accuracy"]
    if "merged" in states:  # the same function as one plain ViT, up to float rounding
        assert record["states"]["merged"]["new_domain_accuracy"] == pytest.approx(adapted["new_domain_accuracy"], abs=2)
    again = reversibility("smoke", method, hparams, seed=0, results_dir=tmp_path, progress=False)
    assert again["skipped"] and again["states"] == record["states"]


def test_methods_that_overwrite_weights_are_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="method 'full' changes pre-trained weights in place .* reversible methods: "
                                         "lora, block_expansion"):
        reversibility("smoke", "full", {}, results_dir=tmp_path, progress=False)
    assert not tmp_path.joinpath("analyses").exists() and not any(tmp_path.iterdir())


@pytest.mark.parametrize(("method", "hparams"), [("full", {}), ("lora", {"r": 8})])
def test_interpolation_runs_from_the_pretrained_backbone_to_the_fine_tuned_one(tmp_path, method, hparams):
    record = interpolation("smoke", method, hparams, seed=0, alphas=(1, 0, 0.5), results_dir=tmp_path, progress=False)
    assert [p["alpha"] for p in record["points"]] == [0.0, 0.5, 1.0]
    start, end = record["points"][0], record["points"][-1]
    assert start["knn"] == record["baseline"]["knn"]  # a = 0: the pre-trained backbone exactly
    plain = run("smoke", method, hparams, seed=0, results_dir=tmp_path / "plain", progress=False, forgetting_steps=())
    assert end["new_domain_accuracy"] == pytest.approx(plain["metrics"]["new_domain_accuracy"], abs=2)  # a = 1
    assert (tmp_path / "analyses" / f"interpolation_{record['run']}.json").is_file()


def test_interpolation_refuses_bad_methods_and_weights(tmp_path):
    with pytest.raises(ValueError, match="method 'block_expansion' cannot be interpolated; allowed: full, top_k, lora"):
        interpolation("smoke", "block_expansion", {"p": 2}, results_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"alphas must be numbers in \[0, 1\], got \[1.5\]"):
        interpolation("smoke", "full", alphas=(0, 1.5), results_dir=tmp_path, progress=False)
    assert not any(tmp_path.iterdir())


def test_analysis_records_draw(tmp_path):
    import vl_convert as vlc

    from vitcf.book import curve_charts, curve_frames
    from vitcf.book.frames import records_frame
    from vitcf.engine.records import read_records

    curve = interpolation("smoke", "lora", {"r": 4}, alphas=(0, 0.5, 1), results_dir=tmp_path, progress=False)
    frame = curve_frames.interpolation_frame([curve])
    assert list(frame["alpha"]) == [0.0, 0.5, 1.0] and set(frame["label"]) == {"LoRA r=4"}
    run("smoke", "linear", {}, seed=0, results_dir=tmp_path, progress=False, forgetting_steps=())
    chart = curve_charts.interpolation_chart([curve], records_frame(read_records(tmp_path)), alpha=0.5)
    spec = chart.to_dict()
    assert spec["params"][0]["name"] == curve_charts.ALPHA_PARAM and spec["params"][0]["bind"]["step"] == 0.5
    svg = vlc.vegalite_to_svg(spec)
    assert "LoRA r=4" in svg and "Linear" in svg
    with pytest.raises(ValueError, match=r"alpha=0.3 was not measured; measured: \[0.0, 0.5, 1.0\]"):
        curve_charts.interpolation_chart([curve], alpha=0.3)
    flip = reversibility("smoke", "lora", {"r": 4}, results_dir=tmp_path, progress=False)
    states = curve_frames.reversibility_frame([flip]).set_index("state")
    assert list(states.index) == ["adapted", "merged", "removed"] and states.loc["removed", "drop"] == 0


def test_the_standard_set_is_validated_then_run_and_read_back(tmp_path, monkeypatch):
    from vitcf.book import pages
    from vitcf.engine.analyses import default_plan, run_analyses

    plan = default_plan("smoke")
    assert [(a, m) for a, m, _ in plan].count(("reversibility", "lora")) == 3
    assert ("interpolation", "full", {}) in plan and ("interpolation", "lora", {"r": 8}) in plan
    with pytest.raises(ValueError, match=r"unknown analysis \['cka'\]; allowed: reversibility, interpolation"):
        run_analyses("smoke", only=["cka"], results_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"seeds must be integers >= 0, got \[-1\]"):
        run_analyses("smoke", seeds=[-1], results_dir=tmp_path, progress=False)
    assert not any(tmp_path.iterdir())
    with pytest.raises(ValueError, match=r"start from runs that have no record in .*: full_seed0.json, lora_r8_seed0.json; "
                                         r"`vitcf sweep --preset smoke` makes them \(or pass --train-missing"):
        run_analyses("smoke", only=["interpolation"], results_dir=tmp_path / "smoke", progress=False)
    assert not any(tmp_path.iterdir())  # refused before any compute
    seen = []
    done = run_analyses("smoke", only=["interpolation"], results_dir=tmp_path / "smoke", progress=False,
                        on_record=seen.append, train_missing=True)
    assert [r["label"] for r in done] == ["Full", "LoRA r=8"] and len(seen) == 2
    monkeypatch.setenv(pages.RESULTS_ENV, str(tmp_path))
    monkeypatch.delenv(pages.PRESET_ENV, raising=False)
    study = pages.load_study("smoke")
    assert list(pages.analyses(study)) == ["interpolation"]
    assert "vitcf analyse --preset smoke --only reversibility" in pages.missing_analysis(study, "reversibility")


def test_cli_analyse_runs_and_refuses_bad_names(tmp_path, capsys):
    from vitcf.engine.cli import main

    folder = tmp_path / "smoke"
    assert main(["analyse", "--preset", "smoke", "--only", "cka", "--results-dir", str(folder), "--quiet"]) == 2
    assert "unknown analysis ['cka']; allowed: reversibility, interpolation" in capsys.readouterr().err
    assert not folder.exists()
    assert main(["analyse", "--preset", "smoke", "--only", "interpolation", "--results-dir", str(folder),
                 "--quiet"]) == 2
    assert "--train-missing" in capsys.readouterr().err
    assert main(["analyse", "--preset", "smoke", "--only", "interpolation", "--results-dir", str(folder),
                 "--quiet", "--train-missing"]) == 0
    out = capsys.readouterr().out
    assert "interpolation Full seed 0: written" in out and "analyses smoke: 2 records" in out
    assert main(["analyse", "--preset", "smoke", "--only", "interpolation", "--results-dir", str(folder),
                 "--quiet"]) == 0
    assert "interpolation LoRA r=8 seed 0: exists, skipped" in capsys.readouterr().out


def test_analyses_reuse_the_weights_their_run_kept(tmp_path):
    from vitcf.engine.study import plan_run, trained_path

    kept = run("smoke", "lora", {"r": 8}, seed=0, results_dir=tmp_path / "swept", progress=False)  # with its curve
    plan = plan_run("smoke", "lora", {"r": 8}, seed=0, results_dir=tmp_path / "swept", forgetting_steps=())
    assert trained_path(plan).is_file() and kept["run"] == plan.path.stem
    loaded = reversibility("smoke", "lora", {"r": 8}, seed=0, results_dir=tmp_path / "swept", progress=False)
    retrained = reversibility("smoke", "lora", {"r": 8}, seed=0, results_dir=tmp_path / "fresh", progress=False)
    assert loaded["trained"].startswith("loaded from weights/") and retrained["trained"] == "fine-tuned"
    assert loaded["states"] == retrained["states"]  # the probes during training do not change what is learnt
    # Weights kept by a run with another schedule never stand in: the run is fine-tuned again.
    short = run("smoke", "lora", {"r": 8}, seed=0, results_dir=tmp_path / "other", progress=False, steps=3)
    short_plan = plan_run("smoke", "lora", {"r": 8}, seed=0, results_dir=tmp_path / "other", steps=3)
    default = plan_run("smoke", "lora", {"r": 8}, seed=0, results_dir=tmp_path / "other", forgetting_steps=())
    assert short["run"] != default.path.stem
    trained_path(default).write_bytes(trained_path(short_plan).read_bytes())
    assert interpolation("smoke", "lora", {"r": 8}, seed=0, alphas=(0, 1), results_dir=tmp_path / "other",
                         progress=False)["trained"] == "fine-tuned"
