"""One fine-tuning run of the study, end to end: (preset, method, hyperparameters, seed) -> record.

    validate everything -> load both domains -> baseline probe (cached per preset) -> build the
    backbone and apply the method -> fine-tune with model selection -> accuracy on the new domain's
    test split -> k-NN (and linear-head) probe of the pre-training domain -> one JSON record

Every argument is checked before any data is read or any file is written, so a bad call costs
nothing and leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from vitcf.base import env, io
from vitcf.base.checks import IntRange, check_each, check_int
from vitcf.engine import records
from vitcf.engine.naming import config_hash, overrides, record_name
from vitcf.engine.record import Environment, InstanceScores, LinearHead, Metrics, RunConfig, RunRecord, Timings
from vitcf.model.backbones import create_backbone, get_spec, pretrained_weights_path
from vitcf.model.checkpoints import CheckpointError, load_into, read_metadata, read_state_dict, save_state_dict, save_tensors, sha256
from vitcf.engine.batching import at_source_size, batches, check_source_size, holdout_split
from vitcf.engine.imagenet import check_imagenet, imagenet_batches
from vitcf.engine.sources import ImageSet, load_dataset
from vitcf.engine.retrieval import first_instances, instance_views
from vitcf.engine.drift import drift
from vitcf.engine.evaluate import (
    extract_features,
    fit_linear_head,
    forgetting,
    knn_correct,
    linear_head_correct,
    percent,
    top1_correct,
)
from vitcf.model.methods import make_method
from vitcf.model.params import count_trainable
from vitcf.engine.presets import Preset, get_preset
from vitcf.engine.train import TrainConfig, finetune, input_transform
from vitcf.base.uncertainty import pack

SCHEMA = records.SCHEMA  # the run record's format version (records.check refuses others)
PROBE_SEED = 0  # the k-NN bank and query subsets are the same for every run of a preset
MAX_SEED = 2**32 - 1  # every generator a run seeds (torch, numpy) takes it
LINEAR_HEAD_DECAY = 1e-4  # without it the probe head overfits the memory bank
HISTORY_POINTS = 200  # loss-curve entries kept in a record (plus every selection evaluation)


@dataclass
class Probe:
    """The pre-training domain as the k-NN probe sees it: a memory bank and scored queries."""

    preset: Preset
    bank: ImageSet | None  # None: streamed from an ImageNet folder
    queries: ImageSet | None
    imagenet_root: Path | None = None
    instances: tuple[ImageSet, ImageSet] | None = None  # the instance-retrieval probe's (bank, queries)

    @property
    def parts(self) -> tuple[str, ...]:
        return ("bank", "queries") + (("instance_bank", "instance_queries") if self.instances else ())

    def batches(self, part: str):
        size = self.preset.eval_batch_size
        if part.startswith("instance_"):
            return batches(self.instances[part == "instance_queries"], size, shuffle=False)
        if self.imagenet_root is not None:
            split, limit = ("train", self.preset.knn_bank) if part == "bank" else ("val", self.preset.knn_queries)
            return imagenet_batches(self.imagenet_root, split, size, limit=limit)
        return batches(self.bank if part == "bank" else self.queries, size, shuffle=False)

    def features(self, model, device, progress) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        spec = get_spec(self.preset.backbone)
        transform = input_transform(spec.img_size, self.preset.knn_mean, self.preset.knn_std, spec.in_chans)
        return {
            part: extract_features(model, self.batches(part), transform, device=device, progress=progress)
            for part in self.parts
        }

    def smaller(self, bank: int, queries: int) -> Probe:
        """The first `bank` and `queries` images of this probe's (already shuffled) subsets."""
        if self.imagenet_root is not None:
            raise ValueError("a smaller curve probe needs an in-memory pre-training domain; the ImageNet probe "
                             "streams from a folder (set the preset's curve_probe to None)")
        instances = None
        if self.instances is not None:
            count = self.preset.instance_probe.curve_images
            instances = (first_instances(self.instances[0], count), first_instances(self.instances[1], count))
        return Probe(self.preset, _first(self.bank, bank), _first(self.queries, queries), instances=instances)


def _first(ds: ImageSet, size: int) -> ImageSet:
    return ds if size >= len(ds) else ds.subset(torch.arange(size))


def _subset(ds: ImageSet, size: int | None) -> ImageSet:
    """`size` images drawn at random (PROBE_SEED), in random order, so that any prefix is a random subset too."""
    if size is None or size >= len(ds):
        return ds
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(PROBE_SEED))
    return ds.subset(order[:size])


def make_probe(preset: Preset) -> Probe:
    if preset.pretrain_domain == "imagenet":
        return Probe(preset, None, None, imagenet_root=check_imagenet(None))
    test = load_dataset(preset.pretrain_domain, "test")
    instances = None if preset.instance_probe is None else instance_views(test, preset.instance_probe)
    return Probe(
        preset,
        _subset(load_dataset(preset.pretrain_domain, "train"), preset.knn_bank),
        _subset(test, preset.knn_queries),
        instances=instances,
    )


def knn_hits(feats: dict, ks: tuple[int, ...], device: torch.device, prefix: str = "") -> dict[int, torch.Tensor]:
    """Whether each query's k-NN class is right, per k (`prefix` "instance_": the instance probe's), computed
    on the run's device (an ImageNet bank of 1.28 M x 768 features is 3.9 GB: on a GPU, 256 queries at a time)."""
    (bank, bank_labels), (queries, query_labels) = feats[prefix + "bank"], feats[prefix + "queries"]
    chunk = 256 if device.type == "cuda" else 1024
    return knn_correct(bank.to(device), bank_labels.to(device), queries.to(device), query_labels.to(device),
                       ks=ks, chunk_size=chunk)


def fit_head(feats: dict) -> torch.nn.Linear:
    """The probe's linear head, fitted on the bank features of `feats` (the study's decay and seed)."""
    bank_features, bank_labels = feats["bank"]
    return fit_linear_head(bank_features, bank_labels, int(bank_labels.max()) + 1,
                           weight_decay=LINEAR_HEAD_DECAY, seed=PROBE_SEED)


def probe_scores(probe: Probe, model, head: torch.nn.Linear | None, device, progress, *,
                 correct: bool = False, refit: bool = False) -> dict:
    feats = probe.features(model, device, progress)
    return scores_of(feats, probe.preset, head, device, correct=correct, refit=refit)


def scores_of(feats: dict, preset: Preset, head: torch.nn.Linear | None, device, *,
              correct: bool = False, refit: bool = False) -> dict:
    """Every probe's score (percent) from extracted features: class-level k-NN per k, the linear head
    `head` (fitted on the pre-trained features), instance retrieval per k; with `refit`, also a head
    fitted on these features' own bank ("linear_head_refit"); with `correct`, each probe's per-query
    correctness packed under "correct" (what the book's paired bootstrap intervals resample)."""
    hits: dict = {"knn": knn_hits(feats, preset.knn_ks, device)}
    if head is not None:
        hits["linear_head"] = linear_head_correct(head, *feats["queries"])
    if refit:
        hits["linear_head_refit"] = linear_head_correct(fit_head(feats), *feats["queries"])
    if "instance_bank" in feats:
        hits["instance"] = knn_hits(feats, preset.knn_ks, device, prefix="instance_")
    scores = {name: ({k: percent(v) for k, v in h.items()} if isinstance(h, dict) else percent(h))
              for name, h in hits.items()}
    if correct:
        scores["correct"] = {name: ({str(k): pack(v.numpy()) for k, v in h.items()} if isinstance(h, dict)
                                    else pack(h.numpy())) for name, h in hits.items()}
    return scores


def pixel_features(probe: Probe) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Raw pixels as features: each image at the backbone's input size and the probe's normalisation,
    flattened and L2-normalised (the same cosine geometry as the CLS features)."""
    spec = get_spec(probe.preset.backbone)
    transform = input_transform(spec.img_size, probe.preset.knn_mean, probe.preset.knn_std, spec.in_chans)
    out = {}
    for part in probe.parts:
        pairs = [(transform(x).flatten(1), y) for x, y in probe.batches(part)]
        out[part] = (torch.nn.functional.normalize(torch.cat([p for p, _ in pairs]), dim=1),
                     torch.cat([y for _, y in pairs]))
    return out


def reference_levels(preset: Preset, probe: Probe, device, progress) -> dict:
    """Every probe on raw pixels and on a random-init network of the backbone's architecture, measured on
    the baseline's bank and queries: how low each probe can fall. The linear head is fitted on each
    representation's own bank features, as the baseline's is."""
    if probe.imagenet_root is not None:  # a pixel probe of the whole ImageNet folder is not worth its cost
        return {}
    random_init = build_model(preset, {"path": None}, num_classes=0, seed=PROBE_SEED).to(device)
    levels = {}
    for name, feats in (("raw_pixels", pixel_features(probe)),
                        ("random_init", probe.features(random_init, device, progress))):
        levels[name] = scores_of(feats, preset, fit_head(feats), device, correct=True)
    return levels


def weights_source(preset: Preset, checkpoint: str | Path | None) -> dict:
    """Where the backbone's starting weights come from, resolved (and hashed) before any compute."""
    if checkpoint is None and not preset.pretrained:
        return {"source": "random initialisation", "path": None, "sha256": None}
    path = Path(checkpoint) if checkpoint is not None else pretrained_weights_path(preset.backbone)
    if not path.is_file():
        raise FileNotFoundError(f"backbone checkpoint not found: {path}")
    source = "checkpoint" if checkpoint is not None else "pre-trained"
    return {"source": source, "path": records.portable(path), "sha256": sha256(path)}


def cached_baseline(path: Path, head_path: Path, key: str) -> tuple[dict, torch.nn.Linear] | None:
    """The folder's baseline record and head when both are there, read and made for `key`; None otherwise.
    A file that cannot be read (corrupt JSON, a truncated head) is moved aside, named, and made again."""
    if not (path.exists() and head_path.exists()):
        return None
    try:
        cached = io.read_json(path)
        if cached.get("key") != key:
            return None
        head = torch.nn.Linear(cached["width"], cached["num_classes"])
        load_into(head, head_path)
        return cached, head
    except Exception as err:  # noqa: BLE001 - whatever the reader raises, the cure is the same
        for broken in (path, head_path):
            aside = records.move_aside(broken, f"unreadable baseline cache: {err}")
            print(f"{broken}: unreadable ({type(err).__name__}: {err}); moved aside to {aside}, made again")
        return None


def baseline(preset: Preset, weights: dict, probe: Probe, folder: Path, device, progress) -> tuple[dict, torch.nn.Linear]:
    """The un-fine-tuned backbone's probe scores and linear head, computed once per preset folder."""
    path, head_path = folder / "baseline.json", folder / "baseline_head.safetensors"
    # What the baseline depends on: the protocol, not the grids of runs to compare with it, nor the
    # length of a run's schedule (the schedule axis shares one folder, and one baseline, across lengths).
    # Nor the new domain's source resolution: the baseline never sees the new domain.
    protocol = {k: v for k, v in preset.protocol().items() if k not in ("steps", "source_size")}
    key = config_hash({"preset": protocol, "weights": weights["sha256"], "schema": SCHEMA,
                       "fields": "per-query correctness"})
    if (found := cached_baseline(path, head_path, key)) is not None:
        return found
    started = time.perf_counter()
    model = build_model(preset, weights, num_classes=0, seed=PROBE_SEED).to(device)
    feats = probe.features(model, device, progress)
    bank_features, bank_labels = feats["bank"]
    num_classes = int(bank_labels.max()) + 1
    head = fit_head(feats)
    record = {
        "key": key,
        "preset": preset.name,
        "backbone": preset.backbone,
        "weights": weights,
        "width": bank_features.shape[1],
        "num_classes": num_classes,
        "bank_size": len(bank_labels),
        "query_size": len(feats["queries"][1]),
        "classes": None if probe.bank is None else list(probe.bank.classes),
        **scores_of(feats, preset, head, device, correct=True),
        "instance_probe": (None if probe.instances is None else
                           {"bank_size": len(probe.instances[0]), "query_size": len(probe.instances[1]),
                            "source": f"{preset.pretrain_domain} test split"}),
        "levels": reference_levels(preset, probe, device, progress),
        "seconds": time.perf_counter() - started,
        "environment": env.environment(device),
    }
    save_state_dict(head, head_path)
    io.write_json(path, record)
    return record, head


def build_model(preset: Preset, weights: dict, num_classes: int, seed: int) -> torch.nn.Module:
    """The starting backbone with a fresh classifier drawn from `seed`.

    A backbone without pre-trained weights (smoke preset) is initialised from PROBE_SEED, so every
    run and the baseline start from the same random network; only the classifier follows the seed.
    """
    torch.manual_seed(PROBE_SEED)
    model = create_backbone(preset.backbone, num_classes=0,
                            checkpoint=None if weights["path"] is None else records.located(weights["path"]))
    torch.manual_seed(seed)
    model.reset_classifier(num_classes)  # PyTorch's default Linear initialisation
    return model


def resolve_device(device: str | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; allowed: cpu, cuda, cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available here; allowed: cpu")
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r}; allowed: cpu, cuda, cuda:N")
    return resolved


@dataclass(frozen=True)
class RunPlan:
    """A fully validated run: nothing has been read or written yet."""

    preset: Preset
    method: object
    seed: int
    train: TrainConfig
    paper_faithful: bool
    forgetting_steps: tuple[int, ...]
    device: torch.device
    path: Path
    keep_checkpoint: bool
    weights: dict  # where the backbone's starting weights come from (see weights_source)


def plan_run(
    preset: str,
    method: str,
    hparams: dict | None = None,
    seed: int = 0,
    *,
    results_dir: str | Path | None = None,
    paper_faithful: bool = False,
    steps: int | None = None,
    lr: float | None = None,
    source_size: int | None = None,
    forgetting_steps: tuple[int, ...] | None = None,
    device: str | None = None,
    compile: bool = False,
    keep_checkpoint: bool = False,
    checkpoint: str | Path | None = None,
) -> RunPlan:
    """Validate a run's arguments (raises ValueError naming the bad value) and fix its record path."""
    hparams = dict(hparams or {})
    spec_preset = get_preset(preset)
    config = make_method(method, **hparams)
    check_int("seed", seed, 0, MAX_SEED)
    check_source_size(spec_preset.new_domain, source_size)
    changes = overrides(spec_preset, method, hparams, lr=lr, steps=steps, source_size=source_size)
    spec_preset = dataclasses.replace(spec_preset, **{k: v for k, v in changes.items() if k != "lr"})
    grid_lr, warmup = spec_preset.schedule_for(method, hparams)
    spec = get_spec(spec_preset.backbone)
    with torch.device("meta"):  # checks what depends on the architecture (k <= depth, p | depth) for free
        config.apply(create_backbone(spec_preset.backbone, num_classes=2))
    train = TrainConfig(
        steps=spec_preset.steps,
        batch_size=spec_preset.batch_size,
        lr=changes.get("lr", grid_lr),
        warmup_steps=warmup,
        eval_every=min(spec_preset.eval_every, spec_preset.steps),
        img_size=spec.img_size,
        mean=spec_preset.finetune_mean,
        std=spec_preset.finetune_std,
        in_chans=spec.in_chans,
        crop_scale=spec_preset.crop_scale,
        momentum=spec_preset.momentum,
        weight_decay=spec_preset.weight_decay,
        eval_batch_size=spec_preset.eval_batch_size,
        compile=compile,
    )
    if forgetting_steps is None:  # the preset's probes (those within a shortened schedule); () for none
        forgetting_steps = tuple(s for s in spec_preset.forgetting_steps if s <= train.steps)
    check_each("forgetting steps", forgetting_steps, IntRange(0, train.steps))
    if paper_faithful:
        changes["paper_faithful"] = True
    if checkpoint is not None:
        changes["checkpoint"] = str(checkpoint)
    if spec_preset.pretrain_domain == "imagenet":
        check_imagenet(None)  # a missing or malformed ImageNet folder fails here, before any compute
    folder = Path(results_dir) if results_dir is not None else records.RESULTS_ROOT / spec_preset.name
    name = record_name(method, hparams, seed, changes)
    return RunPlan(
        preset=spec_preset,
        method=config,
        seed=seed,
        train=train,
        paper_faithful=paper_faithful,
        forgetting_steps=tuple(sorted(set(forgetting_steps))),
        device=resolve_device(device),
        path=folder / f"{name}.json",
        keep_checkpoint=keep_checkpoint,
        weights=weights_source(spec_preset, checkpoint),
    )


@dataclass
class Trained:
    """A fine-tuned model with everything its evaluation needs (see `train_planned`)."""

    model: torch.nn.Module
    result: object  # train.TrainResult; None when the weights were loaded (`trained_or_loaded`)
    probe: Probe
    head: torch.nn.Linear  # the linear-head probe, fitted on the pre-trained features
    base: dict  # the baseline record
    new_test: ImageSet
    trainable: int
    over_steps: list[dict]
    selection: str
    started: float
    source: str = "fine-tuned"  # or where the fine-tuned weights were loaded from
    full_over_steps: list[dict] = dataclasses.field(default_factory=list)  # the full probe at full_probe_steps


@dataclass
class _Prepared:
    probe: Probe
    new_test: ImageSet
    fit_set: ImageSet
    selection_set: ImageSet
    selection: str
    base: dict
    head: torch.nn.Linear
    model: torch.nn.Module
    trainable: int


def _prepare(plan: RunPlan, progress: bool) -> _Prepared:
    """Load both domains, compute (or read) the baseline, build the model with the method applied."""
    preset, device = plan.preset, plan.device
    probe = make_probe(preset)
    new_train = at_source_size(load_dataset(preset.new_domain, "train"), preset.source_size)
    new_test = at_source_size(load_dataset(preset.new_domain, "test"), preset.source_size)
    if plan.paper_faithful:  # the authors select the checkpoint on the test split
        fit_set, selection_set, selection = new_train, new_test, "test split (paper-faithful)"
    else:
        fit_set, selection_set = holdout_split(new_train, preset.holdout_fraction, seed=plan.seed)
        selection = f"held-out {preset.holdout_fraction:.0%} of the train split"
    base, head = baseline(preset, plan.weights, probe, plan.path.parent, device, progress)
    model = build_model(preset, plan.weights, new_train.num_classes, plan.seed)
    model = plan.method.apply(model).to(device)  # LoRA draws its A matrices from the run's seed too
    return _Prepared(probe, new_test, fit_set, selection_set, selection, base, head, model, count_trainable(model))


def train_planned(plan: RunPlan, *, progress: bool = True) -> Trained:
    """Load both domains, compute (or read) the baseline, build the model and fine-tune it."""
    started = time.perf_counter()
    preset, device = plan.preset, plan.device
    prep = _prepare(plan, progress)
    over_steps, full_over_steps = [], []
    probe = prep.probe
    curve = probe.smaller(*preset.curve_probe) if preset.curve_probe and plan.forgetting_steps else probe
    full_steps = set(preset.full_probe_steps) & set(plan.forgetting_steps) if curve is not probe else set()

    def probe_at(step, model):  # every probe: k-NN, instance retrieval, the linear head of the pre-trained features
        if step in plan.forgetting_steps:
            over_steps.append({"step": step, **probe_scores(curve, model, prep.head, device, False)})
        if step in full_steps:
            full_over_steps.append({"step": step, **probe_scores(probe, model, prep.head, device, False, correct=True)})

    result = finetune(
        prep.model, prep.fit_set, prep.selection_set, plan.train,
        device=device, generator=torch.Generator().manual_seed(plan.seed), progress=progress, on_step=probe_at,
    )
    return Trained(prep.model, result, probe, prep.head, prep.base, prep.new_test, prep.trainable, over_steps,
                   prep.selection, started, full_over_steps=full_over_steps)


# --- the fine-tuned weights, kept for the analyses ----------------------------------------------

KEEP_TRAINED_MAX_BYTES = 16 * 2**20  # mini runs and paper-scale adapters are kept; a fully tuned ViT-B is not


def trained_path(plan: RunPlan) -> Path:
    """Where a run's fine-tuned (trainable) tensors are kept: <results>/weights/<run>.safetensors."""
    return plan.path.parent / "weights" / f"{plan.path.stem}.safetensors"


def _identity(plan: RunPlan) -> dict:
    """What the kept weights must have been trained with to stand in for a new fine-tuning."""
    return json.loads(json.dumps({
        "schema": SCHEMA, "run": plan.path.stem, "method": plan.method.name, "hparams": plan.method.hparams,
        "seed": plan.seed, "train": dataclasses.asdict(plan.train), "preset": plan.preset.protocol(),
        "paper_faithful": plan.paper_faithful, "backbone_sha256": plan.weights["sha256"],
    }, sort_keys=True, default=str))


def keep_trained(plan: RunPlan, model: torch.nn.Module) -> Path | None:
    """Write the model's trainable tensors (what fine-tuning changed) if they are small enough."""
    state = {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}
    if sum(t.numel() * t.element_size() for t in state.values()) > KEEP_TRAINED_MAX_BYTES:
        return None
    return save_tensors(state, trained_path(plan), _identity(plan))


def trained_or_loaded(plan: RunPlan, *, progress: bool = True) -> Trained:
    """The run's fine-tuned model: loaded from the weights its sweep kept when they match the plan
    exactly (same run, schedule, seed, protocol and backbone), else fine-tuned now."""
    path = trained_path(plan)
    if not path.is_file():
        return train_planned(plan, progress=progress)
    try:
        if read_metadata(path) != _identity(plan):
            return train_planned(plan, progress=progress)
        state = read_state_dict(path)
    except Exception:  # a truncated or foreign file: fine-tune instead
        return train_planned(plan, progress=progress)
    started = time.perf_counter()
    prep = _prepare(plan, progress)
    params = dict(prep.model.named_parameters())
    trainable = {name for name, p in params.items() if p.requires_grad}
    if set(state) != trainable:
        raise CheckpointError(f"{path} does not hold the trainable tensors of {plan.path.stem}: "
                              f"differing names {sorted(set(state) ^ trainable)[:8]}")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)
    return Trained(prep.model, None, prep.probe, prep.head, prep.base, prep.new_test, prep.trainable, [],
                   prep.selection, started, source=f"loaded from {path.parent.name}/{path.name}, kept by its run")


def new_domain_accuracy(preset: Preset, model: torch.nn.Module, new_test: ImageSet, device) -> float:
    """Top-1 accuracy of `model` on the new domain's test split, with the evaluation input."""
    return percent(new_domain_correct(preset, model, new_test, device))


def new_domain_correct(preset: Preset, model: torch.nn.Module, new_test: ImageSet, device) -> torch.Tensor:
    """Whether `model` is right on each image of the new domain's test split (the evaluation input)."""
    spec = get_spec(preset.backbone)
    transform = input_transform(spec.img_size, preset.finetune_mean, preset.finetune_std, spec.in_chans)
    return top1_correct(model, batches(new_test.to(device), preset.eval_batch_size, shuffle=False),
                        transform, device=device)


def representation_drift(plan: RunPlan, probe: Probe, model: torch.nn.Module) -> dict:
    """Linear CKA per pre-trained block between the starting backbone and the fine-tuned `model`."""
    preset = plan.preset
    spec = get_spec(preset.backbone)
    start = build_model(preset, plan.weights, num_classes=0, seed=PROBE_SEED).to(plan.device)
    inserted = plan.method.inserted_positions(spec.depth) if hasattr(plan.method, "inserted_positions") else ()
    transform = input_transform(spec.img_size, preset.knn_mean, preset.knn_std, spec.in_chans)
    return drift(start, model, probe.batches("queries"), transform, inserted=inserted, device=plan.device)


def execute(plan: RunPlan, *, force: bool = False, progress: bool = True) -> dict:
    """Carry out a planned run and write its record; an existing record is returned unless `force`."""
    if not force and (found := records.existing(plan.path, "run", on_invalid=print)) is not None:
        return found | {"skipped": True}  # an invalid record was moved aside (and named) and is made again
    io.check_writable(plan.path.parent)  # a folder it cannot write fails before the baseline probe
    trained = train_planned(plan, progress=progress)
    preset, device = plan.preset, plan.device
    model, result, probe, head, base = trained.model, trained.result, trained.probe, trained.head, trained.base
    started, trainable, over_steps, selection = trained.started, trained.trainable, trained.over_steps, trained.selection

    # --- evaluation ----------------------------------------------------------------------------
    evaluating = time.perf_counter()
    test_correct = new_domain_correct(preset, model, trained.new_test, device)
    test_accuracy = percent(test_correct)
    after = probe_scores(probe, model, head, device, progress, correct=True, refit=True)
    cka = representation_drift(plan, probe, model)
    eval_seconds = time.perf_counter() - evaluating

    checkpoint = None
    if plan.keep_checkpoint:
        checkpoint = records.portable(save_state_dict(model, plan.path.with_suffix(".safetensors")))
    keep_trained(plan, model)
    knn_base = {int(k): v for k, v in base["knn"].items()}
    record = RunRecord(
        schema=SCHEMA,
        run=plan.path.stem,
        preset=preset.name,
        method=plan.method.name,
        family=plan.method.family,
        label=plan.method.label,
        hparams=plan.method.hparams,
        seed=plan.seed,
        trainable_params=trainable,
        config=RunConfig(
            preset=preset.protocol(),
            train=dataclasses.asdict(plan.train),
            selection=selection,
            backbone_weights=plan.weights,
            paper_faithful=plan.paper_faithful,
            forgetting_steps=list(plan.forgetting_steps),
            curve_probe=(None if preset.curve_probe is None
                         else {"bank": preset.curve_probe[0], "queries": preset.curve_probe[1]}),
            new_domain_data=domain_provenance(preset.new_domain),
        ),
        metrics=Metrics(
            new_domain_accuracy=test_accuracy,
            selection_accuracy=result.best_selection_accuracy,
            best_step=result.best_step,
            knn=after["knn"],
            knn_baseline=knn_base,
            forgetting=forgetting(knn_base, after["knn"]),
            # the frozen head (fitted once on the pre-trained features) and one re-fitted on this run's bank
            # features; the pre-trained backbone's re-fitted head is the frozen head itself
            linear_head=LinearHead(baseline=base["linear_head"], after=after["linear_head"],
                                   refit=after["linear_head_refit"]),
            **({"instance": InstanceScores(baseline=base["instance"], after=after["instance"])}
               if "instance" in after else {}),
            knn_over_steps=over_steps,
            full_probe_over_steps=trained.full_over_steps,
            drift=cka,
            # per-query correctness of every probe and of the new domain's test images (uncertainty.unpack)
            correct={**after["correct"], "new_domain": pack(test_correct.numpy())},
        ),
        timings=Timings(
            train_seconds=result.train_seconds,
            images_per_second=result.images_per_second,
            eval_seconds=eval_seconds,
            total_seconds=time.perf_counter() - started,
        ),
        environment=Environment(**env.environment(device)),
        checkpoint=checkpoint,
        history=_thin(result.history),
    ).to_dict()
    io.write_json(plan.path, record)
    return record


def domain_provenance(name: str) -> dict | None:
    """How a generated new domain was made (the glyphs: settings, font packages, sha256); None for a
    dataset read from files."""
    if name != "glyphs":
        return None
    from vitcf.engine.glyphs import cached_domain

    return cached_domain().provenance()


def _thin(history: list[dict]) -> list[dict]:
    """Keep about HISTORY_POINTS evenly spaced loss entries and every selection evaluation."""
    every = max(1, len(history) // HISTORY_POINTS)
    return [h for i, h in enumerate(history) if i % every == 0 or "selection_accuracy" in h or i == len(history) - 1]


def plan_from_record(record: dict, *, results_dir: str | Path | None = None, device: str | None = None) -> RunPlan:
    """The plan that re-executes a recorded run with the settings it records (into `results_dir`).

    The schedule's steps and learning rate and the new domain's source size are passed on as recorded
    (`plan_run` keeps those that change the preset's protocol, `naming.overrides`); the
    forgetting probes and the paper-faithful selection as recorded, and the backbone as recorded when it
    came from an explicit checkpoint; the plan must then give the record's own name.
    """
    config = record["config"]
    preset = get_preset(record["preset"])
    train = config["train"]
    source_size = config["preset"].get("source_size")  # absent from records at the native resolution
    weights = config["backbone_weights"]
    checkpoint = records.located(weights["path"]) if weights["source"] == "checkpoint" else None
    # The record holds the method's resolved hyperparameters; its name, those the run was asked for.
    full = record["hparams"]
    asked = [p.hparams for p in (*preset.grid, *preset.design)
             if p.method == record["method"] and make_method(p.method, **p.hparams).hparams == full]
    defaults = make_method(record["method"]).hparams
    asked += [{k: v for k, v in full.items() if defaults.get(k) != v}, full]
    plan = None
    for hparams in asked:
        plan = plan_run(record["preset"], record["method"], hparams, record["seed"], results_dir=results_dir,
                        paper_faithful=config["paper_faithful"], steps=train["steps"], lr=train["lr"],
                        source_size=source_size,
                        forgetting_steps=tuple(config["forgetting_steps"]), device=device, checkpoint=checkpoint)
        if plan.path.stem == record["run"]:
            break
    else:
        raise ValueError(f"the record {record['run']} does not re-plan to itself (got {plan.path.stem}): "
                         "it was made with settings this version cannot reproduce")
    if weights["sha256"] != plan.weights["sha256"]:
        raise ValueError(f"the record {record['run']} started from backbone weights with sha256 {weights['sha256']}, "
                         f"but these are {plan.weights['sha256']} ({plan.weights['path']})")
    return plan


def run(preset: str, method: str, hparams: dict | None = None, seed: int = 0, *, force: bool = False,
        progress: bool = True, **options) -> dict:
    """Plan (validate) and execute one run; see `plan_run` for the options."""
    return execute(plan_run(preset, method, hparams, seed, **options), force=force, progress=progress)
