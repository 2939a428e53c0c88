"""Analyses beyond the paper's table, each one run -> one JSON record under results/<preset>/analyses/.

Reversibility: LoRA and block expansion leave every pre-trained weight untouched, so what they
learnt can be removed again. After fine-tuning, the same model is scored in each of its states on
both domains, with the trained classifier kept throughout:

    adapted  - as trained (the paper's measurement)
    merged   - LoRA only: the adapter folded into the weights (one plain ViT, no extra inference cost)
    removed  - the adapter unloaded / the added blocks dropped: the pre-trained backbone again

The new domain is read with the trained classifier in every state, so "removed" also says how much
of the new task the classifier alone keeps on the pre-trained features.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from . import records
from .study import new_domain_accuracy, plan_run, probe_scores, train_planned

ANALYSES = ("reversibility",)


def states(method, model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """The model in each state the method allows (copies: removing one state never alters another)."""
    if not method.reversible:
        raise ValueError(f"reversibility: method {method.name!r} changes pre-trained weights in place and has nothing "
                         f"to remove; reversible methods: lora, block_expansion")
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
    if not plan.method.reversible:
        states(plan.method, None)  # raises, naming the reversible methods
    path = plan.path.parent / "analyses" / f"reversibility_{plan.path.stem}.json"
    if path.exists() and not force:
        return records.read_json(path) | {"skipped": True}
    trained = train_planned(plan, progress=progress)
    scored = {}
    for name, model in states(plan.method, trained.model).items():
        model.eval()
        probe = probe_scores(trained.probe, model, trained.head, plan.device, False)
        scored[name] = {
            "new_domain_accuracy": new_domain_accuracy(plan.preset, model, trained.new_test, plan.device),
            "knn": probe["knn"], "linear_head": probe["linear_head"],
        }
    record = {
        "analysis": "reversibility",
        "run": plan.path.stem,
        "preset": plan.preset.name,
        "method": plan.method.name,
        "label": plan.method.label,
        "hparams": plan.method.hparams,
        "seed": plan.seed,
        "baseline": {"knn": trained.base["knn"], "linear_head": trained.base["linear_head"]},
        "states": scored,
        "environment": records.environment(plan.device),
    }
    records.write_json(path, record)
    return records.read_json(path)  # as every later reader sees it (JSON keys are strings)
