"""Analyses beyond the paper's table, each one run -> one JSON record under results/<preset>/analyses/.

Reversibility: LoRA and block expansion leave every pre-trained weight untouched, so what they
learnt can be removed again. After fine-tuning, the same model is scored in each of its states on
both domains, with the trained classifier kept throughout:

    adapted  - as trained (the paper's measurement)
    merged   - LoRA only: the adapter folded into the weights (one plain ViT, no extra inference cost)
    removed  - the adapter unloaded / the added blocks dropped: the pre-trained backbone again

Both analyses start from the run's fine-tuned model: the weights its sweep kept under
results/<preset>/weights/ when they match the run exactly (`study.trained_or_loaded`), else a new
fine-tuning with the same settings; the record says which (`trained`).

The new domain is read with the trained classifier in every state, so "removed" also says how much
of the new task the classifier alone keeps on the pre-trained features.

Interpolation (WiSE-FT, Wortsman et al. 2022): the backbone's weights are moved back towards the
pre-trained ones, theta(a) = theta_pre + a * (theta_ft - theta_pre), with the trained classifier,
for a from 0 (pre-trained backbone) to 1 (as fine-tuned); every point is scored on both domains.
For LoRA the fine-tuned weights are the merged ones, so theta_ft - theta_pre is the adapter's
update and a scales the adapter. The curve is the whole stability-plasticity trade-off that one
fine-tuning run offers, to be set against the paper's fixed points.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from vitcf.base import env, io
from vitcf.base.checks import IntRange, NumberRange, check_each
from vitcf.engine import records
from vitcf.engine.study import build_model, new_domain_accuracy, plan_run, probe_scores, trained_or_loaded

ANALYSES = ("reversibility", "interpolation")
ALPHAS = tuple(round(0.1 * i, 1) for i in range(11))
INTERPOLABLE = ("full", "top_k", "lora")  # a single plain ViT before and after, with weights that moved


def _check_reversible(method) -> None:
    if not method.reversible:
        raise ValueError(f"reversibility: method {method.name!r} changes pre-trained weights in place and has nothing "
                         f"to remove; reversible methods: lora, block_expansion")


def _record_path(plan, analysis: str) -> Path:
    return plan.path.parent / "analyses" / f"{analysis}_{plan.path.stem}.json"


def _write_record(path: Path, analysis: str, plan, trained, results: dict) -> dict:
    """Write an analysis record (the run's identity, its baseline, `results`); return it as read back."""
    record = {
        "analysis": analysis,
        "run": plan.path.stem,
        "preset": plan.preset.name,
        "method": plan.method.name,
        "family": plan.method.family,
        "label": plan.method.label,
        "hparams": plan.method.hparams,
        "seed": plan.seed,
        "baseline": {"knn": trained.base["knn"], "linear_head": trained.base["linear_head"]},
        "trained": trained.source,
        **results,
        "environment": env.environment(plan.device),
    }
    io.write_json(path, record)
    return io.read_json(path)  # as every later reader sees it (JSON keys are strings)


def states(method, model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """The model in each state the method allows (copies: removing one state never alters another)."""
    _check_reversible(method)
    found = {"adapted": model}
    if hasattr(method, "merge"):
        found["merged"] = method.merge(copy.deepcopy(model))
    found["removed"] = method.revert(copy.deepcopy(model))
    return found


def reversibility(preset: str, method: str, hparams: dict | None = None, seed: int = 0, *,
                  results_dir: str | Path | None = None, device: str | None = None, force: bool = False,
                  progress: bool = True) -> dict:
    """Fine-tune one reversible configuration, then score it adapted, merged (LoRA) and removed.

    Writes results/<preset>/analyses/reversibility_<run>.json (or under `results_dir`); an existing
    record is returned unless `force`. Arguments are validated before anything is read.
    """
    plan = plan_run(preset, method, hparams, seed, results_dir=results_dir, device=device, forgetting_steps=())
    _check_reversible(plan.method)
    path = _record_path(plan, "reversibility")
    if not force and (found := records.existing(path, "analysis", on_invalid=print)) is not None:
        return found | {"skipped": True}
    trained = trained_or_loaded(plan, progress=progress)
    scored = {name: _score(trained, plan, model) for name, model in states(plan.method, trained.model).items()}
    return _write_record(path, "reversibility", plan, trained, {"states": scored})


def _score(trained, plan, model: torch.nn.Module) -> dict:
    model.eval()
    probe = probe_scores(trained.probe, model, trained.head, plan.device, False)
    return {"new_domain_accuracy": new_domain_accuracy(plan.preset, model, trained.new_test, plan.device),
            "knn": probe["knn"], "linear_head": probe["linear_head"]}


def _check_alphas(alphas) -> tuple[float, ...]:
    alphas = tuple(alphas)
    check_each("interpolation: alphas", alphas, NumberRange(0, 1), nonempty=True)
    return tuple(sorted(set(float(a) for a in alphas)))


def interpolation(preset: str, method: str, hparams: dict | None = None, seed: int = 0, *,
                  alphas=ALPHAS, results_dir: str | Path | None = None, device: str | None = None,
                  force: bool = False, progress: bool = True) -> dict:
    """Fine-tune once, then score the backbone interpolated towards its pre-trained weights.

    Writes results/<preset>/analyses/interpolation_<run>.json; an existing record is returned
    unless `force`. Methods: full, top_k and lora (linear leaves the backbone where it was, block
    expansion changes its depth).
    """
    alphas = _check_alphas(alphas)
    plan = plan_run(preset, method, hparams, seed, results_dir=results_dir, device=device, forgetting_steps=())
    if plan.method.name not in INTERPOLABLE:
        raise ValueError(f"interpolation: method {plan.method.name!r} cannot be interpolated; allowed: "
                         f"{', '.join(INTERPOLABLE)}")
    path = _record_path(plan, "interpolation")
    if not force and (found := records.existing(path, "analysis", on_invalid=print)) is not None:
        return found | {"skipped": True}
    trained = trained_or_loaded(plan, progress=progress)
    tuned = plan.method.merge(copy.deepcopy(trained.model)) if hasattr(plan.method, "merge") else trained.model
    tuned = tuned.to(plan.device)
    start = build_model(plan.preset, plan.weights, trained.new_test.num_classes, plan.seed).to(plan.device)
    pre, ft = start.state_dict(), tuned.state_dict()
    if set(pre) != set(ft):
        raise AssertionError(f"interpolation: tensor names differ: {sorted(set(pre) ^ set(ft))}")
    points = []
    for alpha in alphas:
        mixed = {name: value if name.startswith("head.") else pre[name] + alpha * (value - pre[name])
                 for name, value in ft.items()}
        start.load_state_dict(mixed)
        points.append({"alpha": alpha, **_score(trained, plan, start)})
    return _write_record(path, "interpolation", plan, trained, {"points": points})


def default_plan(preset: str) -> list[tuple[str, str, dict]]:
    """(analysis, method, hparams) of the standard set: every reversible grid row is taken apart,
    and full fine-tuning and LoRA r=8 (the paper's reference rank) are interpolated."""
    from vitcf.engine.presets import get_preset

    grid = get_preset(preset).grid
    plan = [("reversibility", p.method, p.hparams) for p in grid if p.method in ("lora", "block_expansion")]
    plan += [("interpolation", p.method, p.hparams) for p in grid
             if p.method == "full" or (p.method == "lora" and p.hparams == {"r": 8})]
    return plan


def run_analyses(preset: str, *, only=None, seeds=(0,), results_dir=None, device=None, progress=True,
                 on_record=None, train_missing: bool = False) -> list[dict]:
    """Run the standard set (or the analyses named in `only`) for each seed; finished ones are skipped.

    Everything is validated before the first run: unknown analysis names, seeds, the preset, and
    every (method, hyperparameters) through `plan_run`. An analysis starts from its run, so a run with
    no record is an error naming the sweep that makes it, unless `train_missing` (then it is trained
    here, as the sweep would).
    """
    from tqdm.auto import tqdm

    runners = {"reversibility": reversibility, "interpolation": interpolation}
    wanted = list(ANALYSES) if only is None else list(only)
    unknown = [name for name in wanted if name not in runners]
    if unknown or not wanted:
        raise ValueError(f"unknown analysis {unknown or wanted!r}; allowed: {', '.join(ANALYSES)}")
    seeds = list(seeds)
    check_each("seeds", seeds, IntRange(0), nonempty=True)
    jobs = [(name, method, hparams, seed) for seed in seeds for name, method, hparams in default_plan(preset)
            if name in wanted]
    plans = [(name, plan_run(preset, method, hparams, seed, results_dir=results_dir, device=device,
                             forgetting_steps=())) for name, method, hparams, seed in jobs]
    missing = sorted({plan.path.name for name, plan in plans
                      if not plan.path.exists() and not _record_path(plan, name).exists()})
    if missing and not train_missing:
        seeds_flag = "" if seeds == [0] else " --seeds " + " ".join(map(str, sorted(set(seeds))))
        raise ValueError(f"the analyses start from runs that have no record in {plans[0][1].path.parent}: "
                         f"{', '.join(missing)}; `vitcf sweep --preset {preset}{seeds_flag}` makes them "
                         "(or pass --train-missing to train them here)")
    done = []
    for name, method, hparams, seed in tqdm(jobs, desc=f"analyses {preset}", unit="run", disable=not progress):
        record = runners[name](preset, method, hparams, seed, results_dir=results_dir, device=device, progress=False)
        done.append(record)
        if on_record is not None:
            on_record(record)
    return done
