"""The `vitcf` command line: `vitcf params`, `vitcf run`, `vitcf sweep`, `vitcf analyse`, `vitcf pretrain`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from vitcf.base.checks import allowed_of, default_text
from vitcf.model.methods import METHODS


def _params(args: argparse.Namespace) -> int:
    from vitcf.model.params import paper_table

    rows = paper_table(num_classes=args.num_classes)
    if args.format == "json":
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_table(rows))
    return 0 if all(row["explained"] for row in rows) else 1


PRESET_HELP = ("smoke, mini (digits, the near domain), mini-glyphs (glyphs, the far domain), paper, paper-lite (no ImageNet needed) or paper-DOMAIN with DOMAIN one of cifar10, dtd, "
               "food101, flowers102 (see vitcf.engine.presets)")

def _hparam_options() -> dict[str, list[tuple[str, dataclasses.Field]]]:
    """Every method hyperparameter as a command-line option: its name -> (method, config field) of each
    method that takes it. The fields state their ranges and defaults; the method's config checks the values."""
    options = {}
    for method, cls in METHODS.items():
        for field in dataclasses.fields(cls):
            options.setdefault(field.name, []).append((method, field))
    return options


HPARAM_OPTIONS = _hparam_options()


def hparam_help(takers: list[tuple[str, dataclasses.Field]]) -> str:
    """Which methods take a hyperparameter, what each allows and its default: 'lora: an integer >= 1 (default 8)'."""
    return "; ".join(f"{method}: {allowed_of(field).describe()} (default {default_text(field)})"
                     for method, field in takers)


def method_help() -> str:
    """The registered methods, each with its hyperparameter options (and the positive control marked)."""
    entries = []
    for name, cls in METHODS.items():
        notes = [f"--{field.name}" for field in dataclasses.fields(cls)]
        notes += ["the positive control"] if cls.family == "control" else []
        entries.append(f"{name} ({', '.join(notes)})" if notes else name)
    return ", ".join(entries)


STEPS_HELP = ("also probe the pre-training domain after these training steps (default: the preset's, e.g. mini "
              "0 1 2 5 10 20 50 100 200 300; give the option with no steps for none)")


def _steps(steps: list[int] | None) -> tuple[int, ...] | None:
    return None if steps is None else tuple(steps)


def _run(args: argparse.Namespace) -> int:
    from vitcf.engine.study import execute, plan_run

    hparams = {name: getattr(args, name) for name in HPARAM_OPTIONS if getattr(args, name) is not None}
    plan = plan_run(
        args.preset, args.method, hparams, args.seed,
        results_dir=args.results_dir, paper_faithful=args.paper_faithful, steps=args.steps, lr=args.lr,
        source_size=args.source_size,
        forgetting_steps=_steps(args.forgetting_steps), device=args.device, keep_checkpoint=args.keep_checkpoint,
        checkpoint=args.checkpoint, compile=args.compile,
    )
    record = execute(plan, force=args.force, progress=not args.quiet)
    metrics = record["metrics"]
    knn = ", ".join(f"k={k}: {v:.2f}" for k, v in metrics["knn"].items())
    status = "exists, skipped (use --force to re-run)" if record.get("skipped") else "written"
    print(f"{record['label']} seed {record['seed']}: {metrics['new_domain_accuracy']:.2f}% on the new domain; "
          f"pre-training domain k-NN {knn}")
    print(f"record {status}: {plan.path}")
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    from vitcf.engine.pretrain import get_pretrain_config, run_pretraining
    from vitcf.engine.study import resolve_device

    overrides = dict(parse_settings(args.set))
    overrides.update({k: v for k, v in {"epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed}.items()
                      if v is not None})
    config = get_pretrain_config(args.preset, **overrides)
    card = run_pretraining(config, out=args.out, device=resolve_device(args.device), progress=not args.quiet)
    knn = card["knn"]
    k = card["quality_bar"]["k"]
    print(f"{config.backbone}: k-NN (k={k}) {knn['pretrained'][k]:.2f} vs {knn['random_init'][k]:.2f} at random init "
          f"and {knn['raw_pixels'][k]:.2f} on raw pixels; {card['images_per_second']:.0f} images/s, "
          f"{card['wall_seconds'] / 60:.1f} min; {card['quality_bar']['min_accuracy']}% bar "
          f"{'met' if card['quality_bar']['met'] else 'NOT met'}")
    print(f"weights: {card['weights']['file']} sha256 {card['weights']['sha256']}")
    return 0


def parse_settings(items: list[str]) -> list[tuple[str, object]]:
    """KEY=VALUE pairs; a VALUE that reads as JSON (numbers, lists, true/false) is taken as such."""
    pairs = []
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes KEY=VALUE, got {item!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        pairs.append((key.replace("-", "_"), tuple(value) if isinstance(value, list) else value))
    return pairs


def _analyse(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from vitcf.engine.analyses import run_analyses

    def report(record: dict) -> None:
        status = "exists, skipped" if record.get("skipped") else "written"
        tqdm.write(f"{record['analysis']} {record['label']} seed {record['seed']}: {status}")

    done = run_analyses(args.preset, only=args.only, seeds=tuple(args.seeds), results_dir=args.results_dir,
                        device=args.device, progress=not args.quiet, on_record=report,
                        train_missing=args.train_missing)
    print(f"analyses {args.preset}: {len(done)} records")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from vitcf.engine.executors import ExecutorConfig, parse_gpus
    from vitcf.engine.sweep import sweep

    executor = ExecutorConfig(
        args.executor, jobs=args.jobs, gpus=parse_gpus(args.gpus), time_min=args.time, partition=args.partition,
        gpus_per_job=args.gpus_per_job, cpus_per_task=args.cpus_per_task, mem_gb=args.mem_gb,
        array_parallelism=args.slurm_array_parallelism, account=args.account, qos=args.qos,
    )
    summary = sweep(
        args.preset, seeds=tuple(args.seeds), only=args.only, results_dir=args.results_dir, device=args.device,
        forgetting_steps=_steps(args.forgetting_steps), progress=not args.quiet, executor=executor, grid=args.grid,
        on_run=lambda outcome: tqdm.write(str(outcome)),  # a line per run, above the progress bar
    )
    print(summary)
    return 0 if summary.ok else 1


def format_table(rows: list[dict]) -> str:
    """A plain-text table of the parameter accounting, then one explanation per row."""
    header = ("method", "trainable (ours)", "reported", "composition")
    body = [(r["label"], f"{r['trainable']:,}", r["reported_text"], r["composition"]) for r in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.extend(f"{r['label']}: {r['note']}" for r in rows)
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vitcf", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    params = sub.add_parser(
        "params",
        help="exact trainable-parameter counts of every paper row (ViT-B/16, no download)",
        description="Recompute every row of the paper's parameter column from the ViT-B/16 "
        "architecture and explain each difference. Exits 1 if any difference is unexplained.",
    )
    params.add_argument("--format", choices=("table", "json"), default="table")
    params.add_argument("--num-classes", type=int, default=100, help="classifier width (CIFAR-100: 100)")
    params.set_defaults(func=_params)

    run = sub.add_parser(
        "run",
        help="one fine-tuning run -> one JSON record",
        description="Fine-tune one method on a preset's new domain, measure forgetting on its "
        "pre-training domain, and write one record (default folder: results/<preset>/). All "
        "arguments are checked before any compute; a run whose record exists is skipped.",
    )
    run.add_argument("--preset", required=True, help=PRESET_HELP)
    run.add_argument("--method", required=True, help=method_help())
    hps = run.add_argument_group("method hyperparameters", "each is checked against the range its method allows "
                                 "before any compute; left out, the method's default")
    for name, takers in HPARAM_OPTIONS.items():
        hps.add_argument(f"--{name}", type=allowed_of(takers[0][1]).type, default=None, help=hparam_help(takers))
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--results-dir", default=None)
    run.add_argument("--steps", type=int, default=None, help="override the preset's number of steps")
    run.add_argument("--lr", type=float, default=None, help="override the grid's learning rate")
    run.add_argument("--source-size", type=int, default=None, metavar="PX",
                     help="downsample the new domain's images to this side first (from 2 to one less than its own; "
                     "the input pipeline then resizes them to the model's size as usual)")
    run.add_argument("--forgetting-steps", type=int, nargs="*", default=None, help=STEPS_HELP)
    run.add_argument("--paper-faithful", action="store_true",
                     help="select the checkpoint on the test split, as the authors' code does")
    run.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    run.add_argument("--checkpoint", default=None,
                     help="start from this backbone weights file (.safetensors or .pth) instead of the preset's")
    run.add_argument("--compile", action="store_true", help="torch.compile the training step (GPU)")
    run.add_argument("--keep-checkpoint", action="store_true", help="save the fine-tuned weights beside the record")
    run.add_argument("--force", action="store_true", help="re-run even if the record exists")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.set_defaults(func=_run)

    swp = sub.add_parser(
        "sweep",
        help="every grid point x seed of a preset, each run as an executed notebook beside its record",
        description="Execute notebooks/finetune.ipynb with papermill once per grid point and seed; each "
        "run leaves <run>.json and <run>.ipynb (default folder: results/<preset>/). All arguments are "
        "checked before the first run. Runs whose record exists are skipped, so re-running resumes; a "
        "failed run leaves <run>.error.json and the sweep goes on. Exits 1 if any run failed. "
        "--executor local runs each run as a subprocess (several at once, spread over --gpus); "
        "--executor slurm submits one SLURM job per run through submitit; their logs go to <folder>/logs/.",
    )
    swp.add_argument("--preset", required=True, help=PRESET_HELP)
    swp.add_argument("--grid", default="core",
                     help="core (default: the paper's rows), design (the design space around them: LoRA ranks and "
                     "targets, every top-k, block placement, surgical fine-tuning), rates (five method families on one "
                     "grid of learning rates), schedule (the same families at longer schedules, probed over "
                     "training), control (the positive control: full fine-tuning at 30 times its paper rate, "
                     "built to wreck the representation) or resolution (the same families with the new domain "
                     "downsampled first); all write to the preset's folder")
    swp.add_argument("--only", nargs="+", default=None, metavar="NAME",
                     help="only these grid points, by method name or label (e.g. lora 'Block exp. p=2')")
    swp.add_argument("--seeds", type=int, nargs="+", default=[0])
    swp.add_argument("--results-dir", default=None)
    swp.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    swp.add_argument("--forgetting-steps", type=int, nargs="*", default=None, help=STEPS_HELP)
    swp.add_argument("--quiet", action="store_true", help="no progress bar")
    ex = swp.add_argument_group("executor (through submitit; see vitcf.engine.executors)")
    ex.add_argument("--executor", default="inline",
                    help="inline (default: one run after another in this process), local (one subprocess per run) "
                    "or slurm (one SLURM job per run)")
    ex.add_argument("--jobs", type=int, default=None,
                    help="local: runs at a time (default: one per --gpus entry, else 1)")
    ex.add_argument("--gpus", default=None, metavar="IDS",
                    help="local: GPU ids to spread the runs over, e.g. 0,1 (each job sees one GPU as cuda:0); "
                    "without it local jobs run on the CPU")
    ex.add_argument("--time", type=int, default=None, metavar="MINUTES",
                    help="minutes one run may take: slurm's time limit (required), local's (optional)")
    ex.add_argument("--partition", default=None, help="slurm: partition(s), e.g. gpu")
    ex.add_argument("--gpus-per-job", type=int, default=None, help="slurm: GPUs per job (default 1; 0: CPU jobs)")
    ex.add_argument("--cpus-per-task", type=int, default=None, help="slurm: CPUs per job")
    ex.add_argument("--mem-gb", type=float, default=None, help="slurm: memory per job, GB")
    ex.add_argument("--slurm-array-parallelism", type=int, default=None,
                    help="slurm: jobs of the array running at once (default: submitit's, 256)")
    ex.add_argument("--account", default=None, help="slurm: account to charge")
    ex.add_argument("--qos", default=None, help="slurm: quality of service")
    swp.set_defaults(func=_sweep)

    ana = sub.add_parser(
        "analyse",
        help="analyses beyond the paper: reversibility and weight interpolation -> records under analyses/",
        description="Run the standard analyses of a preset (see vitcf.engine.analyses.default_plan): every LoRA and "
        "block expansion row scored adapted, merged and removed, and full fine-tuning and LoRA r=8 "
        "interpolated back to the pre-trained weights. Each writes one record under "
        "results/<preset>/analyses/; existing records are skipped. Everything is checked first.",
    )
    ana.add_argument("--preset", required=True, help=PRESET_HELP)
    ana.add_argument("--only", nargs="+", default=None, metavar="ANALYSIS", help="reversibility, interpolation")
    ana.add_argument("--seeds", type=int, nargs="+", default=[0])
    ana.add_argument("--results-dir", default=None, help="the preset's results folder (default: results/<preset>/)")
    ana.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    ana.add_argument("--quiet", action="store_true", help="no progress bar")
    ana.add_argument("--train-missing", action="store_true",
                     help="fine-tune the runs the analyses start from when they have no record (default: refuse, "
                     "naming the sweep that makes them)")
    ana.set_defaults(func=_analyse)

    pre = sub.add_parser(
        "pretrain",
        help="DINO pre-training of a backbone -> weights + provenance card",
        description="Pre-train the preset's backbone with DINO on its pre-training images (labels "
        "unused), then write the teacher backbone as safetensors and a JSON card beside it "
        "(default for mini: the shipped vitcf/weights/mini.safetensors). The training state is checkpointed "
        "after every epoch beside the output (NAME.resume.pt); the same command resumes it after a crash.",
    )
    pre.add_argument("--preset", required=True, help="mini or smoke")
    pre.add_argument("--epochs", type=int, default=None)
    pre.add_argument("--batch-size", type=int, default=None)
    pre.add_argument("--seed", type=int, default=None)
    pre.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override one setting of vitcf.engine.pretrain.PretrainConfig, e.g. --set base_lr=0.001 "
                     "--set teacher_momentum=[0.99,1.0] (repeatable)")
    pre.add_argument("--out", default=None, help="output .safetensors path")
    pre.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    pre.add_argument("--quiet", action="store_true")
    pre.set_defaults(func=_pretrain)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError, RuntimeError) as err:
        print(f"vitcf {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # what is recorded stays; nothing partial was written (records are atomic)
        print(f"vitcf {args.command}: interrupted; every finished record is kept, and the same command resumes",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
