"""Speed projected and judged: the paper grids' GPU-hours at the measured rates, each target's verdict, the table."""

from __future__ import annotations

from vitcf.base.paper import PAPER_ROWS
from vitcf.engine.presets import Preset
from vitcf.engine.speed.measure import CIFAR100_TRAIN
from vitcf.model.methods import make_method

# Dataset sizes of the paper's protocol (CIFAR-100's test split, ImageNet-1K k-NN probe).
CIFAR100_TEST = 10_000
IMAGENET_TRAIN = 1_281_167
IMAGENET_VAL = 50_000
IMAGENETTE_TRAIN = 9_469  # the paper-lite probe: Imagenette v2 (320 px), train and val splits
IMAGENETTE_VAL = 3_925

# The speed targets.
MFU_TARGET = 0.40
REFERENCE_SPEEDUP_TARGET = 4.0
EVAL_TARGET = 5_000  # images/s, decode included
GRID_HOURS_TARGET = 2.5  # on one H100
LITE_HOURS_TARGET = 1.0  # the paper-lite grid, on one H100

SMOKE = "not applicable (smoke)"


def add_ratios(methods: list[dict], peak: dict, reference: dict) -> None:
    """Add to each measured method, and to a timed reference, the figures taken against full fine-tuning,
    the matmul peak and the reference: FLOP ratios, model FLOP utilisation and speed ratios."""
    full = next(m for m in methods if m["key"] == "full")
    for m in methods:
        m["flops"]["backward_vs_full"] = m["flops"]["backward_per_image"] / full["flops"]["backward_per_image"]
        m["flops"]["train_vs_forward"] = m["flops"]["train_per_image"] / m["flops"]["forward_per_image"]
        m["mfu"] = m["images_per_second"] * m["flops"]["train_per_image"] / peak["flops_per_second"]
        m["speed_vs_full"] = m["images_per_second"] / full["images_per_second"]
        m["no_slower_than_full"] = m["speed_vs_full"] >= 1.0
    if "images_per_second" in reference:  # timed, not skipped
        reference["mfu"] = (reference["images_per_second"] * reference["flops"]["train_per_image"]
                            / peak["flops_per_second"])
        for m in methods:  # ours per method against the authors' default, full fine-tuning
            m["vs_reference"] = m["images_per_second"] / reference["images_per_second"]


def _config_key(method: str, hparams: dict) -> str:
    """A run's label ('LoRA r=8'), by which measured methods and the paper's rows are matched."""
    return make_method(method, **hparams).label


def _project_runs(methods: list[dict], evaluation: dict, preset: Preset, knn_images: int,
                  knn_rates: dict[str, float], probes_per_run: int) -> tuple[list[dict], list[str]]:
    """Per paper row of `preset`: seconds of training, selection, test and k-NN probing at the measured
    rates (rows not timed here are returned by label in the second list)."""
    by_config = {_config_key(m["method"], m["hparams"]): m for m in methods}
    full = by_config[_config_key("full", {})]
    selections = preset.steps // preset.eval_every
    selection_images = round(preset.holdout_fraction * CIFAR100_TRAIN)
    select_rate = evaluation["selection"]["images_per_second"]
    rows, missing = [], []
    for row in PAPER_ROWS:
        label = _config_key(row.method, row.hparams)
        measured, timed_as = by_config.get(label), label
        if measured is None and row.method == "lora":  # the rank only sizes LoRA's small adapter matmuls
            timed_as = _config_key("lora", {"r": 8})
            measured = by_config.get(timed_as)
        if measured is None:
            missing.append(label)
            continue
        slower = measured["flops"]["forward_per_image"] / full["flops"]["forward_per_image"]
        rows.append({
            "run": label, "timed_as": timed_as,
            "train_seconds": preset.steps * preset.batch_size / measured["images_per_second"],
            "selection_seconds": selections * selection_images * slower / select_rate,
            "test_seconds": CIFAR100_TEST * slower / select_rate,
            "knn_seconds": {name: probes_per_run * knn_images * slower / rate for name, rate in knn_rates.items()},
        })
    return rows, missing


def project_grid(methods: list[dict], evaluation: dict, preset: Preset) -> dict:
    """Seconds for the ten paper runs and the baseline probe at the measured rates.

    Per run: 10,000 training steps of 128 images; a selection evaluation every `eval_every` steps
    on the held-out split; the test split once; the k-NN probe over all of ImageNet-1K (train as
    the bank, val as queries). Once: the k-NN probe of the pre-trained backbone. Evaluations of a
    deeper model (block expansion) are slowed by its forward-FLOP ratio to the 12-block one.
    """
    knn_images = IMAGENET_TRAIN + IMAGENET_VAL
    eval_rates = {"project_pipeline": evaluation["project_pipeline"]["images_per_second"],
                  "gpu_decode": evaluation["gpu_decode"]["images_per_second"]}
    rows, missing = _project_runs(methods, evaluation, preset, knn_images, eval_rates, probes_per_run=1)
    if missing:
        return {"projected": False, "reason": f"not timed here: {', '.join(missing)}"}
    selections = preset.steps // preset.eval_every
    selection_images = round(preset.holdout_fraction * CIFAR100_TRAIN)
    baseline = {name: knn_images / rate for name, rate in eval_rates.items()}
    common = sum(r["train_seconds"] + r["selection_seconds"] + r["test_seconds"] for r in rows)
    totals = {name: common + baseline[name] + sum(r["knn_seconds"][name] for r in rows) for name in eval_rates}
    return {
        "projected": True,
        "runs": rows,
        "baseline_knn_seconds": baseline,
        "total_seconds": totals["project_pipeline"],
        "gpu_hours": totals["project_pipeline"] / 3600,
        "gpu_hours_with_gpu_decode": totals["gpu_decode"] / 3600,
        "includes": [
            f"{len(rows)} runs x {preset.steps:,} steps x {preset.batch_size} images at each method's measured rate "
            "(LoRA r=4 and r=16 at r=8's)",
            f"{selections} selection evaluations per run on the {selection_images:,}-image hold-out and one "
            f"{CIFAR100_TEST:,}-image test evaluation, at the measured accuracy() rate",
            f"a k-NN probe per run and one of the pre-trained backbone, each over {IMAGENET_TRAIN:,} + "
            f"{IMAGENET_VAL:,} ImageNet JPEGs at the measured project-pipeline rate (gpu_hours_with_gpu_decode: "
            "at the GPU-decode rate)",
            "evaluations of block-expanded models slowed by their forward-FLOP ratio to the 12-block model",
        ],
        "excludes": [
            f"the k-NN search itself (a {IMAGENET_VAL:,} x {IMAGENET_TRAIN:,} similarity product per probe) and "
            "the linear-head probe",
            "loading CIFAR-100, building models, writing records; reading a cold ImageNet from disk",
        ],
    }


def project_lite(methods: list[dict], evaluation: dict, preset: Preset) -> dict:
    """Seconds for the `paper-lite` grid: the paper's runs at `preset`'s schedule, each probing the whole
    of Imagenette (in memory at 224 px, so at the in-memory accuracy() rate) after training and at
    every forgetting step, and one baseline probe; plus the longest schedule within the target."""
    knn_images = IMAGENETTE_TRAIN + IMAGENETTE_VAL
    rate = evaluation["selection"]["images_per_second"]
    probes = 1 + len(preset.forgetting_steps)
    rows, missing = _project_runs(methods, evaluation, preset, knn_images, {"in_memory": rate}, probes)
    if missing:
        return {"projected": False, "reason": f"not timed here: {', '.join(missing)}"}
    baseline = knn_images / rate
    train = sum(r["train_seconds"] for r in rows)
    fixed = baseline + sum(r["test_seconds"] + r["knn_seconds"]["in_memory"] for r in rows)
    per_step = (train + sum(r["selection_seconds"] for r in rows)) / preset.steps  # both grow with the schedule
    total = fixed + per_step * preset.steps
    return {
        "projected": True,
        "preset": preset.name,
        "steps": preset.steps,
        "runs": rows,
        "baseline_knn_seconds": baseline,
        "total_seconds": total,
        "gpu_hours": total / 3600,
        "steps_within_target": max(0, int((LITE_HOURS_TARGET * 3600 - fixed) / per_step)),
        "includes": [
            f"{len(rows)} runs x {preset.steps:,} steps x {preset.batch_size} images at each method's measured rate",
            f"selection every {preset.eval_every} steps and one test evaluation, as for the paper grid",
            f"{probes} k-NN probes per run (after training and at steps {', '.join(map(str, preset.forgetting_steps))}) "
            f"and one baseline probe, each over Imagenette's {IMAGENETTE_TRAIN:,} + {IMAGENETTE_VAL:,} images at the "
            "measured in-memory rate",
        ],
        "excludes": ["downloading and decoding CIFAR-100 and Imagenette once (cached afterwards)",
                     "the k-NN search and the linear-head probe (small at 9,469 x 3,925)"],
    }



def judge(doc: dict) -> list[dict]:
    """Each speed target with its measured value and pass / fail (or why it has none)."""
    methods, projection = doc["methods"], doc["projection"]
    full = next(m for m in methods if m["key"] == "full")
    slowest = min(methods, key=lambda m: m["speed_vs_full"])
    prefixes = [m["frozen_prefix"]["back_propagated"] for m in methods]
    eval_rate = doc["evaluation"]["project_pipeline"]["images_per_second"]
    speedup, hours = full.get("vs_reference"), projection.get("gpu_hours")
    lite = doc.get("projection_lite", {})
    lite_hours = lite.get("gpu_hours")
    unmeasured = {  # why a target has no figure, where it can lack one
        "full_vs_reference": doc["reference"].get("reason"),
        "frozen_prefix_not_backpropagated": "the FLOP counter did not see a prefix module run",
        "paper_grid_gpu_hours": projection.get("reason"),
        "paper_lite_grid_gpu_hours": lite.get("reason", "no paper-lite projection in this document"),
    }
    targets = [
        ("full_mfu", "full fine-tuning model FLOP utilisation >= 40%", MFU_TARGET, full["mfu"],
         full["mfu"] >= MFU_TARGET),
        ("full_vs_reference", "full fine-tuning >= 4x the reference pipeline's images/s",
         REFERENCE_SPEEDUP_TARGET, speedup, None if speedup is None else speedup >= REFERENCE_SPEEDUP_TARGET),
        ("no_method_slower_than_full", "every method's images/s >= full fine-tuning's (the slowest shown)", 1.0,
         {"method": slowest["key"], "speed_vs_full": slowest["speed_vs_full"]}, slowest["speed_vs_full"] >= 1.0),
        ("frozen_prefix_not_backpropagated", "no backward FLOPs inside any method's frozen prefix", 0.0,
         {m["key"]: m["frozen_prefix"]["backward_flops_per_image"] for m in methods},
         None if None in prefixes else not any(prefixes)),
        ("evaluation_images_per_second", "k-NN feature extraction >= 5,000 images/s including JPEG decode "
         "(the project's loader)", EVAL_TARGET, eval_rate, eval_rate >= EVAL_TARGET),
        ("paper_grid_gpu_hours", "the whole paper grid <= 2.5 GPU-hours on one H100", GRID_HOURS_TARGET,
         hours, None if hours is None else hours <= GRID_HOURS_TARGET),
        ("paper_lite_grid_gpu_hours", "the whole paper-lite grid <= 1 GPU-hour on one H100", LITE_HOURS_TARGET,
         lite_hours, None if lite_hours is None else lite_hours <= LITE_HOURS_TARGET),
    ]
    judged = []
    for name, description, target, measured, passed in targets:
        if doc["smoke"]:
            status = SMOKE
        elif passed is None:
            status = f"not measured ({unmeasured[name]})"
        else:
            status = "pass" if passed else "fail"
        entry = {"name": name, "description": description, "target": target, "measured": measured, "status": status}
        if name.endswith("grid_gpu_hours") and not doc["smoke"] and "H100" not in (doc["gpu"] or ""):
            entry["note"] = f"measured on {doc['gpu']}; the target is stated for an H100"
        judged.append(entry)
    return judged



def _gib(value: int | None) -> str:
    """Bytes in GiB with one decimal; '-' where memory is not tracked."""
    return "-" if value is None else f"{value / 2**30:.1f}"


def table(doc: dict) -> str:
    """The benchmark's document as a readable table: each method's figures, the reference, evaluation,
    the projections and the targets."""
    lines = [f"paper_speed on {doc['gpu'] or doc['environment']['hardware']}"
             + (" -- SMOKE: wiring check only, no meaningful figures" if doc["smoke"] else ""),
             f"{doc['peak']['dtype']} matmul peak: {doc['peak']['flops_per_second'] / 1e12:.3g} TFLOP/s", "",
             f"{'method':<18}{'img/s':>9}{'step ms':>9}{'GiB':>6}{'fwd GF':>8}{'train GF':>9}{'bwd/full':>9}"
             f"{'MFU':>7}{'vs full':>8}{'vs ref':>8}  prefix back-propagated"]
    for m in doc["methods"]:
        ref = "-" if m.get("vs_reference") is None else f"{m['vs_reference']:.2f}x"
        lines.append(
            f"{m['label']:<18}{m['images_per_second']:>9.1f}{1000 * m['step_seconds']:>9.1f}"
            f"{_gib(m['peak_memory_bytes']):>6}"
            f"{m['flops']['forward_per_image'] / 1e9:>8.3g}{m['flops']['train_per_image'] / 1e9:>9.3g}"
            f"{m['flops']['backward_vs_full']:>9.3f}{100 * m['mfu']:>6.1f}%{m['speed_vs_full']:>7.2f}x{ref:>8}  "
            f"{ {True: 'YES', False: 'no', None: 'unknown'}[m['frozen_prefix']['back_propagated']]}")
    ref = doc["reference"]
    if "images_per_second" in ref:
        lines.append(f"{'reference full':<18}{ref['images_per_second']:>9.1f}{1000 * ref['step_seconds']:>9.1f}"
                     f"{_gib(ref['peak_memory_bytes']):>6}{ref['flops']['forward_per_image'] / 1e9:>8.3g}"
                     f"{ref['flops']['train_per_image'] / 1e9:>9.3g}{'':>9}{100 * ref['mfu']:>6.1f}%")
    else:
        lines.append(f"reference: {ref['reason']}")
    ev = doc["evaluation"]
    lines += ["", f"k-NN features, project loader: {ev['project_pipeline']['images_per_second']:.0f} img/s; "
                  f"GPU decode: {ev['gpu_decode']['images_per_second']:.0f} img/s; "
                  f"selection accuracy: {ev['selection']['images_per_second']:.0f} img/s"]
    projection = doc["projection"]
    if projection["projected"]:
        lines.append(f"paper grid projected: {projection['gpu_hours']:.2f} GPU-hours "
                     f"({projection['gpu_hours_with_gpu_decode']:.2f} with GPU decode)")
    else:
        lines.append(f"paper grid not projected: {projection['reason']}")
    lite = doc["projection_lite"]
    if lite["projected"]:
        lines.append(f"paper-lite grid projected: {lite['gpu_hours']:.2f} GPU-hours at {lite['steps']:,} steps "
                     f"(within {LITE_HOURS_TARGET:g} h: up to {lite['steps_within_target']:,} steps)")
    lines += ["", "targets:"] + [f"  {t['status']:<24} {t['description']}: measured {_brief(t['measured'])}"
                                  for t in doc["targets"]]
    return "\n".join(lines)


def _brief(value) -> str:
    """A measured value in a few characters: floats to three figures, dicts as key=value pairs."""
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_brief(v)}" for k, v in value.items())
    return str(value)
