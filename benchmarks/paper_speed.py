"""The paper preset's speed on one GPU, measured beside a rebuilt reference pipeline.

    python benchmarks/paper_speed.py [--methods full,top3,...] [--compile] [--skip-reference]
                                     [--steps 50] [--warmup-steps 10] [--out FILE]
    python benchmarks/paper_speed.py --smoke      # a CPU wiring check in seconds; no figures

Everything is measured in one process on one GPU, with random-init weights (speed does not depend
on them) and synthetic data in the real formats, so nothing is downloaded:

1. training images/s and peak memory of each method (full, top-3, linear, LoRA r=8, block expansion
   p=1..4) through the project's own code: `create_backbone` + `make_method(...).apply`, then
   `vitcf.engine.train.finetune` itself on uint8 32x32 images held on the GPU (CIFAR-100's format), at the
   paper preset's batch, crop and normalisation. Warm-up steps are excluded; the timed window is
   bracketed by `torch.cuda.synchronize`;
2. FLOPs per image of each method, counted by `torch.utils.flop_counter.FlopCounterMode` on one real
   training step (`vitcf.engine.train.train_step`), per module, so that the backward pass through a frozen
   prefix (patch embedding and the blocks below the first trainable one) can be seen to be zero;
3. model FLOP utilisation: images/s x training FLOPs per image over the dense bf16 matmul peak
   measured in the same run;
4. the reference pipeline rebuilt from the authors' description: Hugging Face transformers'
   `ViTForImageClassification` of the same shape, a torchvision PIL transform pipeline
   (RandomResizedCrop + flip from 32x32 images) in a 4-worker DataLoader, fp32 with TF32;
5. k-NN feature extraction images/s including JPEG decode: the project's ImageNet loader
   (`vitcf.engine.imagenet.imagenet_batches`, PIL decode in DataLoader workers) over a folder of synthetic
   JPEGs, and, for comparison, a GPU-decode path (`torchvision.io.decode_jpeg(device="cuda")`);
6. the projected wall time of the whole paper grid (10 runs + ImageNet-1K k-NN evaluation).

The JSON document is printed to stdout and written atomically to --out (default
benchmarks/results/paper_speed.json; paper_speed_smoke.json with --smoke); a readable table goes
to stderr. Exit status: 0 when every measured target passes (always with --smoke), 1 when the
benchmark ran but a target failed, 2 for bad arguments or a machine that cannot run it (nothing is
written then). The reference needs `transformers` (`pip install -e '.[bench]'`). The measuring,
projecting and judging code is `vitcf.engine.speed`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import shlex
import sys
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import torch

from vitcf.base import env, io
from vitcf.engine.presets import get_preset
from vitcf.engine.speed.measure import (METHODS, Settings, gpu_settings, measure_evaluation, measure_method,
                                        measure_peak, progress_bar, smoke_settings, synthetic_cifar)
from vitcf.engine.speed.projection import add_ratios, judge, project_grid, project_lite, table
from vitcf.engine.speed.reference import measure_reference

RESULTS = Path(__file__).resolve().parent / "results"


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= `minimum`, else an error naming the value and what is allowed."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer; allowed: integers >= {minimum}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is out of range; allowed: integers >= {minimum}")
        return value

    return parse


def _method_list(text: str) -> list[str]:
    """An argparse type: comma-separated names of `METHODS`, full among them, duplicates dropped."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in METHODS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown method {', '.join(map(repr, unknown)) or repr(text)}; allowed: {', '.join(METHODS)}"
        )
    if "full" not in names:
        raise argparse.ArgumentTypeError(f"{text!r} lacks 'full': every ratio is taken against full fine-tuning")
    return list(dict.fromkeys(names))


def build_parser() -> argparse.ArgumentParser:
    """The command line; every check runs before any work."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="check the wiring on the CPU (micro backbone)")
    parser.add_argument("--methods", type=_method_list, default=list(METHODS),
                        help=f"comma-separated subset of: {', '.join(METHODS)} (default: all; must include full)")
    parser.add_argument("--steps", type=_int_at_least(1), help="timed training steps per method (default 50)")
    parser.add_argument("--warmup-steps", type=_int_at_least(0), help="untimed steps first (default 10)")
    parser.add_argument("--batch-size", type=_int_at_least(1), help="training batch (default: the preset's, 128)")
    parser.add_argument("--eval-images", type=_int_at_least(1), help="images per feature-extraction timing")
    parser.add_argument("--compile", action="store_true", help="torch.compile the training forward, as TrainConfig does")
    parser.add_argument("--skip-reference", action="store_true", help="do not time the transformers reference")
    parser.add_argument("--reference-attention", choices=("eager", "sdpa"),
                        help="the reference's attention implementation (default: transformers' own default)")
    parser.add_argument("--seed", type=_int_at_least(0), default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--out", type=Path, help="JSON file (default: benchmarks/results/paper_speed[_smoke].json)")
    return parser


def resolve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[Settings, torch.device, str | None]:
    """The settings, the device and why the reference is skipped (None: it runs); exits 2 when the
    arguments or the machine cannot give a meaningful run."""
    preset = get_preset("smoke" if args.smoke else "paper")
    settings = (smoke_settings if args.smoke else gpu_settings)(preset)
    overrides = {"timed_steps": args.steps, "warmup_steps": args.warmup_steps, "batch_size": args.batch_size,
                 "eval_images": args.eval_images}
    settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    settings = replace(settings, train_images=max(settings.train_images, 2 * settings.batch_size))
    warm = settings.eval_warmup_batches * settings.eval_batch_size
    if settings.eval_images <= warm:
        parser.error(f"--eval-images {settings.eval_images} leaves nothing to time: it must be more than the "
                     f"{settings.eval_warmup_batches} warm-up batch(es) of {settings.eval_batch_size} images, "
                     f"i.e. > {warm}")
    out = args.out or RESULTS / ("paper_speed_smoke.json" if args.smoke else "paper_speed.json")
    if out.is_dir():
        parser.error(f"--out {out} is a folder; give a file path")
    args.out = out
    if args.smoke:
        device = torch.device("cpu")
    elif not torch.cuda.is_available():
        parser.error("no CUDA device here (torch.cuda.is_available() is False): the benchmark needs one GPU; "
                     "run with --smoke for a CPU check of the wiring")
    else:
        device = torch.device("cuda", torch.cuda.current_device())
    skip = None
    if args.skip_reference:
        skip = "skipped: --skip-reference"
    elif importlib.util.find_spec("transformers") is None:
        if not args.smoke:
            parser.error("the reference pipeline needs the 'transformers' package, which is not installed "
                         "(pip install transformers, or pip install -e '.[bench]'); "
                         "or pass --skip-reference to run the rest without it")
        skip = "skipped: the 'transformers' package is not installed"
    return settings, device, skip



def main(argv: list[str] | None = None) -> int:
    """Measure, relate, project and judge; write the document and print it, with its table on stderr."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    settings, device, reference_skipped = resolve(args, parser)
    preset = get_preset(settings.preset)
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")

    peak = measure_peak(device, settings.matmul_sizes, settings.matmul_seconds)
    train_set = synthetic_cifar(settings.train_images, device, args.seed)
    methods = [measure_method(key, preset, settings, train_set, device, compile=args.compile, seed=args.seed,
                              quiet=args.quiet)
               for key in progress_bar(args.methods, args.quiet, desc="methods", unit="method")]
    del train_set
    reference = ({"reason": reference_skipped} if reference_skipped else
                 measure_reference(preset, settings, device, seed=args.seed, attention=args.reference_attention,
                                   quiet=args.quiet))
    add_ratios(methods, peak, reference)
    evaluation = measure_evaluation(preset, settings, device, seed=args.seed, quiet=args.quiet)

    doc = {
        "benchmark": "paper_speed",
        "smoke": args.smoke,
        "date": started,
        "command": shlex.join(["python", "benchmarks/paper_speed.py", *argv]),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "environment": env.environment(device),
        "settings": {**asdict(settings), "backbone": preset.backbone, "compile": args.compile,
                     "weights": "random init (speed does not depend on the weights)",
                     "data": "synthetic uint8 images of CIFAR's shape (3, 32, 32), random labels"},
        "peak": peak,
        "methods": methods,
        "reference": reference,
        "evaluation": evaluation,
        "projection": project_grid(methods, evaluation, get_preset("paper")),  # the paper's, even when smoke
        "projection_lite": project_lite(methods, evaluation, get_preset("paper-lite")),
    }
    doc["targets"] = judge(doc)
    io.write_json(args.out, doc)
    print(table(doc), file=sys.stderr)
    print(json.dumps(doc, indent=2, sort_keys=True, default=str))
    print(f"written to {args.out}", file=sys.stderr)
    return 0 if args.smoke or all(t["status"] != "fail" for t in doc["targets"]) else 1


if __name__ == "__main__":
    sys.exit(main())
