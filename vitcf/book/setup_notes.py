"""What was run, on what and how long, in sentences (Markdown): the backbone, the protocol, the timings.

The backbone's card, the protocol, the grids, the glyph domain and the measured timings.
"""

from __future__ import annotations

from pathlib import Path

from vitcf.base.paper import DINO_VITB16_KNN
from vitcf.book.pages import Study, repo_relative
from vitcf.book.stats import AXIS_LABELS, HEADLINE_K
from vitcf.engine.presets import Preset, get_preset
from vitcf.base.io import read_json
from vitcf.engine.records import REPO
from vitcf.model.methods import make_method


# --- the pre-trained backbone ------------------------------------------------------------------------

def card_knn(card: dict, which: str) -> dict[int, float]:
    """A card's k-NN accuracies ("pretrained", "random_init" or "raw_pixels") by k ({} if not recorded)."""
    return {int(key): value for key, value in card["knn"].get(which, {}).items()}


def quality_text(bar: dict) -> str:
    """The card's verdict in words: the bar, and below it the fallback it was shipped under."""
    text = f"{'met' if bar['met'] else 'NOT met'} (k={bar['k']} at least {bar['min_accuracy']}%)"
    if bar["met"] and "stretch_accuracy" in bar:
        text += f"; stretch goal of {bar['stretch_accuracy']}% {'met' if bar['stretch_met'] else 'not met'}"
    elif not bar["met"] and "fallback_margin" in bar:
        text += (f"; shipped under the fallback rule (at least {bar['fallback_margin']:.0f} points above random "
                 f"initialisation): {'met' if bar['fallback_met'] else 'NOT met'}")
    return text


def backbone_note(card: dict) -> str:
    """What the pre-trained backbone is worth as a feature extractor, in plain words (Markdown)."""
    k = card["quality_bar"]["k"]
    knn, random_init = card_knn(card, "pretrained")[k], card_knn(card, "random_init")[k]
    pixels = card_knn(card, "raw_pixels").get(k)
    bar = card["quality_bar"]
    text = (f"After {card['config']['epochs']} epochs of DINO on the CPU ({(card.get('wall_seconds') or card['train_seconds']) / 60:.0f} "
            f"minutes), the backbone's CLS features reach **{knn:.2f}%** weighted k-NN accuracy (k={k}) on the "
            f"Fashion-MNIST test split, against {random_init:.2f}% for the same network at random initialisation")
    text += f" and {pixels:.2f}% for the raw pixels." if pixels is not None else "."
    if bar["met"]:
        return text + f" That meets the project's bar of {bar['min_accuracy']}%."
    gap = bar["min_accuracy"] - knn
    text += (f" **That is {gap:.2f} points short of the project's bar of {bar['min_accuracy']}%**")
    if pixels is not None and knn < pixels:
        text += f", and {pixels - knn:.2f} points below the raw pixels"
    text += (f": the backbone is shipped under the fallback rule (at least {bar.get('fallback_margin', 15):.0f} points "
             f"above random initialisation), which it {'meets' if bar.get('fallback_met') else 'does NOT meet'}. "
             "Its features are a real but weak pre-training: forgetting is measured against what they hold, "
             "which is less than raw pixels would.")
    return text


def pixels_comparison(card: dict | None) -> str:
    """One clause: the backbone's k-NN accuracy against the raw pixels', from its card (Markdown)."""
    if card is None or "raw_pixels" not in card.get("knn", {}):
        return "no card with a raw-pixel comparison is in this checkout"
    k = card["quality_bar"]["k"]
    ours, pixels = card_knn(card, "pretrained")[k], card_knn(card, "raw_pixels")[k]
    relation = "below" if ours < pixels else "above"
    return (f"its CLS features score {ours:.2f}% under the k-NN probe (k={k}), {abs(ours - pixels):.2f} points "
            f"{relation} the raw pixels' {pixels:.2f}%")


# --- the protocol, the grids and the new domains --------------------------------------------------------

def protocol_note(spec) -> str:
    """One Markdown paragraph: the protocol of a CPU preset, from the preset itself."""
    text = (f"Preset `{spec.name}`: {spec.description}. Backbone `{spec.backbone}` at {spec.img_size}x{spec.img_size} "
            f"pixels; {spec.steps:,} SGD steps at batch {spec.batch_size} with each configuration's learning rate "
            f"from the paper's grid; checkpoint selection every {spec.eval_every} steps on a held-out "
            f"{spec.holdout_fraction:.0%} of the training split; k-NN bank of {spec.knn_bank or 'all'} training "
            f"images and {spec.knn_queries or 'all'} test queries of `{spec.pretrain_domain}`, k in "
            f"{', '.join(map(str, spec.knn_ks))}")
    if spec.instance_probe is not None:
        probe = spec.instance_probe
        text += (f"; instance retrieval on {probe.images:,} test images x {probe.views} seeded views "
                 f"({probe.bank_views} in the bank, {probe.views - probe.bank_views} as queries; rotation "
                 f"±{probe.rotation:g}°, scale {probe.scale[0]}-{probe.scale[1]}, shift ±{probe.shift:.0%})")
    return text + "."


def grids_note(preset: Preset) -> str:
    """The two grids of `preset` in words, read from `vitcf.engine.presets` (Markdown)."""
    if not preset.rates and not preset.schedule:
        return f"The `{preset.name}` preset defines no axis grid."
    families = ", ".join(dict.fromkeys(make_method(p.method, **p.hparams).label for p in (*preset.rates, *preset.schedule)))
    rates = ", ".join(f"{lr:g}" for lr in sorted({p.lr for p in preset.rates}))
    lengths = {}
    for p in preset.schedule:
        lengths.setdefault(p.steps or preset.steps, []).append(make_method(p.method, **p.hparams).label)
    every = [n for n, labels in sorted(lengths.items()) if set(labels) == set(AXIS_LABELS)]
    some = [f"{n:,} ({', '.join(labels)} only)" for n, labels in sorted(lengths.items()) if n not in every]
    return (f"For the `{preset.name}` preset: {families}; rates {rates} (the preset's {preset.steps:,} steps); "
            f"schedules of {', '.join(f'{n:,}' for n in every)}{', ' + ', '.join(some) if some else ''} steps.")


def glyph_note(runs: list[dict]) -> str:
    """What the glyph domain of these records is, from their recorded provenance (Markdown)."""
    made = next((r["config"].get("new_domain_data") for r in runs if r["config"].get("new_domain_data")), None)
    if made is None:
        return "*These records do not carry the glyph domain's provenance.*"
    config, faces, images = made["config"], made["typefaces"], made["images"]
    merged = [group for group in made["classes"] if len(group) > 1]
    hashes = {r["config"]["new_domain_data"]["sha256"] for r in runs if r["config"].get("new_domain_data")}
    packages = ", ".join(f"{name} {version}" for name, version in made["font_packages"].items() if version)
    return (
        f"**The glyph domain.** {len(made['classes'])} classes: the digits and the Latin, Greek and Cyrillic letters "
        f"of both cases, with characters drawn alike in most typefaces merged into one class ({len(merged)} merged "
        f"groups, e.g. {', '.join(merged[:6])}). Each character is rendered white on black at {config['size']} px from "
        f"{faces['train']} training typefaces and, for the test split, from {faces['test']} typefaces of other design "
        f"lineages ({', '.join(faces['test_lineages'])}), never seen in training: {images['train']:,} training and "
        f"{images['test']:,} test images, each at a random scale ({config['scale'][0]}-{config['scale'][1]} of the "
        f"image), rotation (within ±{config['rotation']:g}°) and position, from a fixed seed. Font packages: "
        f"{packages or 'not recorded'}. The images' sha256 is `{made['sha256'][:16]}…`"
        + (" in every record." if len(hashes) == 1 else f"; **the records hold {len(hashes)} different hashes**.")
    )


def still_learning_note(runs: list[dict], label: str = "Full") -> str:
    """Whether `label`'s held-out accuracy was still rising at mid-schedule (Markdown), from its histories."""
    curves = []
    for record in runs:
        if record["label"] != label:
            continue
        points = {h["step"]: h["selection_accuracy"] for h in record["history"] if "selection_accuracy" in h}
        if points:
            curves.append((record["config"]["train"]["steps"], points))
    if not curves:
        return f"*No {label} record here carries its held-out accuracy over training.*"
    length = curves[0][0]
    mid = min(curves[0][1], key=lambda step: abs(step - length / 2))
    before = max((s for s in curves[0][1] if s < mid), default=None)
    at = [points[mid] for _, points in curves if mid in points]
    prior = [points[before] for _, points in curves if before in points]
    final = [points[max(points)] for _, points in curves]
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    rising = before is not None and mean(at) > mean(prior)
    return (f"{label} fine-tuning's held-out accuracy (mean over {len(curves)} seed(s)) is "
            + (f"{mean(prior):.2f}% at step {before}, " if before is not None else "")
            + f"{mean(at):.2f}% at step {mid}, mid-schedule, and {mean(final):.2f}% at the end ({length} steps): "
            + ("still rising at mid-schedule, so the backbone is still learning the new domain."
               if rising else "no longer rising at mid-schedule: the new domain saturates within this schedule."))


def lite_note(study: Study, k: int = HEADLINE_K) -> str:
    """What the paper-lite probe is and how its baseline compares with DINO's IN-1K k-NN (Markdown)."""
    preset = get_preset(study.preset)
    base = study.baseline
    if base is None:
        return (f"No baseline probe of the `{study.preset}` preset is recorded in `{repo_relative(study.folder)}` yet: "
                f"the first run of `vitcf sweep --preset {study.preset}` computes it (and downloads what it needs).")
    classes = base.get("classes") or []
    knn = {int(key): value for key, value in base["knn"].items()}
    text = (f"The un-fine-tuned `{preset.backbone}` backbone, probed on `{preset.pretrain_domain}` "
            f"({base['num_classes']} classes{': ' + ', '.join(classes) if classes else ''}; a memory bank of "
            f"{base['bank_size']:,} images and {base['query_size']:,} scored queries), reaches a k-NN accuracy "
            f"of {knn[k]:.2f}% at k={k}.")
    if preset.name == "paper-lite":
        text += (f" DINO's published k-NN accuracy on all 1,000 ImageNet classes is {DINO_VITB16_KNN:.1f}%; a "
                 f"{base['num_classes']}-way probe of well-separated classes starts much closer to 100%, so the "
                 f"absolute numbers do not compare with the paper's IN-1K column, only each run's drop from this "
                 f"baseline does.")
    return text


# --- measured timings ------------------------------------------------------------------------------------

def timing_summary(study: Study) -> str:
    """One Markdown sentence: the runs' summed time per seed, on which hardware (`study` has runs)."""
    seconds = sum(r["timings"]["total_seconds"] for r in study.runs)
    seeds = len({r["seed"] for r in study.runs})
    hardware = sorted({r["environment"]["hardware"] for r in study.runs})
    return (f"The {len(study.runs)} recorded runs took {seconds:,.0f} s ({seconds / 3600:.2f} h) in all, "
            f"{seconds / seeds:,.0f} s per seed, on {'; '.join(hardware)}. The baseline probe, computed once per "
            f"results folder, comes on top.")


def lite_projection(root: Path = REPO) -> str:
    """The paper-lite grid's projected GPU-hours from the performance benchmark's record, if measured (Markdown)."""
    path = root / "benchmarks" / "results" / "paper_speed.json"
    doc = read_json(path) if path.is_file() else {}
    lite = doc.get("projection_lite") or {}
    if doc.get("smoke") or not doc.get("gpu") or not lite.get("projected"):
        return ("No GPU measurement of the paper-lite grid is recorded in this checkout yet: "
                "`python benchmarks/paper_speed.py` on one GPU projects it (random weights, synthetic data: the "
                "speed does not depend on either).")
    return (f"Projected from the performance benchmark on {doc['gpu']} ({str(doc.get('date', ''))[:10]}): "
            f"{lite['gpu_hours']:.2f} GPU-hours for one seed of the paper-lite grid at {lite['steps']:,} steps "
            f"(target: at most 1 GPU-hour on one H100; the longest schedule within it: "
            f"{lite['steps_within_target']:,} steps).")


def gpu_timings_note(root: Path = REPO) -> str:
    """The mini commands' wall times on one GPU (benchmarks/gpu_timings.py's record), if measured (Markdown)."""
    path = root / "benchmarks" / "results" / "gpu_timings.json"
    doc = read_json(path) if path.is_file() else {}
    if doc.get("smoke") or not doc.get("gpu"):
        return ("No GPU timing of the mini commands is recorded in this checkout yet "
                "(`python benchmarks/gpu_timings.py` on a GPU records it).")
    pre = doc["pretrain"]
    runs = "; ".join(f"{r.get('label', r['method'])} {r['wall_seconds']:.0f} s"
                     + ("" if r["status"] == "finished" else f" ({r['status']})") for r in doc["runs"])
    speed = f", {pre['images_per_second']:.0f} images/s while training" if "images_per_second" in pre else ""
    if "epochs_finished" in pre:  # cut off: how far it got
        speed += f", {pre['epochs_finished']} epochs finished in {pre['train_seconds']:.0f} s of training"
    return (f"On one {doc['gpu']} ({str(doc['date'])[:10]}), `vitcf pretrain --preset mini` took "
            f"{pre['wall_seconds'] / 60:.1f} minutes ({pre['status']}{speed}), and one mini run per method took "
            f"{runs} of wall time, each a fresh process (`python benchmarks/gpu_timings.py`, "
            f"`benchmarks/results/gpu_timings.json`).")


# The make target of each preset's axes (its wall time: benchmarks/results/<job>_budget.json).
AXES_JOB = {"mini": "axes", "mini-glyphs": "glyphs-axes"}


def axes_budget_note(root: Path = REPO, preset: str = "mini") -> str:
    """The measured wall time of `preset`'s axes (`make axes` for mini, `make glyphs-axes` for mini-glyphs:
    benchmarks/results/<job>_budget.json), as a sentence."""
    if preset not in AXES_JOB:  # a preset without a make job (smoke, paper): its sweeps are the command
        return (f"No `make` job runs the axes of the `{preset}` preset: `vitcf sweep --preset {preset} --grid schedule` "
                f"and `--grid rates` run them (make jobs exist for {', '.join(AXES_JOB)}).")
    job = AXES_JOB[preset]
    path = root / "benchmarks" / "results" / f"{job}_budget.json"
    record = read_json(path) if path.is_file() else None
    if not record:
        return (f"The time of `make {job}` is not measured in this checkout yet: "
                f"`python benchmarks/book_budget.py --job {job}` measures it.")
    steps = "; ".join(f"{step['step']} {step['seconds']:.0f} s" for step in record["steps"])
    runs = record.get("axis_runs", {})
    before = len(runs.get("recorded_before", []))
    return (f"`make {job}` took {record['total_seconds'] / 60:.1f} min on {record['environment']['hardware']} "
            f"({steps}), against a target of {record['target_seconds'] / 60:.0f} min: "
            f"{'met' if record['within_target'] else 'NOT met'}. It planned {runs.get('planned', '?')} runs, of which "
            f"{before} were recorded before it started (`{record['command']}`).")
