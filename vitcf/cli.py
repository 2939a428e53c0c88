"""The `vitcf` command line: `vitcf params` (more subcommands join as the study grows)."""

from __future__ import annotations

import argparse
import json
import sys


def _params(args: argparse.Namespace) -> int:
    from .params import paper_table

    rows = paper_table(num_classes=args.num_classes)
    if args.format == "json":
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_table(rows))
    return 0 if all(row["explained"] for row in rows) else 1


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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError, RuntimeError) as err:
        print(f"vitcf {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
