"""How the instance-retrieval probe's size and views set its range: raw pixels, random init, the backbone.

    python benchmarks/instance_probe.py [--preset mini] [--images 500 1000 2000] [--views 6 10] [--out FILE]

For each candidate (source images x views, half of the views as the bank), measures the weighted k-NN
of the instance probe (k = 20, T = 0.07) on raw pixels, on a random-init network of the preset's
architecture and on its pre-trained backbone, on the same bank and queries, and the seconds the
backbone's features take. A probe is useful when the backbone sits well above both references (room to
fall) and below 100% (room to tell). Prints a table and writes benchmarks/results/instance_probe.json;
the preset's `instance_probe` was chosen from it.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from vitcf.base import env, io
from vitcf.engine.presets import get_preset
from vitcf.engine.retrieval import InstanceProbe
from vitcf.engine.study import PROBE_SEED, build_model, make_probe, pixel_features, scores_of, weights_source


def measure(preset, device) -> dict:
    probe = make_probe(preset)
    weights = weights_source(preset, None)
    out = {"bank": len(probe.instances[0]), "queries": len(probe.instances[1])}
    pixels = pixel_features(probe)
    out["raw_pixels"] = scores_of(pixels, preset, None, device)["instance"][20]
    for name, source in (("random_init", {"path": None}), ("pretrained", weights)):
        model = build_model(preset, source, num_classes=0, seed=PROBE_SEED).to(device)
        started = time.perf_counter()
        feats = probe.features(model, device, False)
        out[f"{name}_seconds"] = round(time.perf_counter() - started, 2)
        out[name] = scores_of(feats, preset, None, device)["instance"][20]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--images", type=int, nargs="+", default=[500, 1000, 2000])
    parser.add_argument("--views", type=int, nargs="+", default=[6, 10])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "instance_probe.json"))
    args = parser.parse_args()
    base = get_preset(args.preset)
    device = torch.device("cpu")
    rows = []
    print(f"{'images':>6} {'views':>5} {'bank':>6} {'pixels':>7} {'random':>7} {'backbone':>8} {'seconds':>7}")
    for images in args.images:
        for views in args.views:
            config = dataclasses.replace(base.instance_probe or InstanceProbe(), images=images, views=views,
                                         bank_views=views // 2, curve_images=min(images, 250))
            row = {"images": images, "views": views, "bank_views": views // 2,
                   **measure(dataclasses.replace(base, instance_probe=config), device)}
            rows.append(row)
            print(f"{images:>6} {views:>5} {row['bank']:>6} {row['raw_pixels']:>7.2f} {row['random_init']:>7.2f} "
                  f"{row['pretrained']:>8.2f} {row['pretrained_seconds']:>7.2f}")
    result = {"preset": args.preset, "k": 20, "temperature": 0.07, "chosen": dataclasses.asdict(base.instance_probe)
              if base.instance_probe else None, "candidates": rows, "environment": env.environment(device)}
    io.write_json(Path(args.out), result)
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
