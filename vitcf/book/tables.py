"""The tables a page shows, formatted for readers: results, settings, provenance, timings, claims, intervals."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd

from vitcf.base.paper import DINO_VITB16_KNN, PAPER_ROWS
from vitcf.base.uncertainty import bracket
from vitcf.book.curve_frames import reversibility_frame
from vitcf.book.evidence import RESOLUTION_PROBES, resolution_order
from vitcf.book.frames import DESIGN_SD, FAR, NEAR, domains_frame
from vitcf.book.pages import Study
from vitcf.book.setup_notes import card_knn, quality_text
from vitcf.book.stats import (
    AXIS_LABELS,
    HEAD,
    HEADLINE_K,
    INSTANCE,
    KNN,
    PROBES,
    index_of,
    label_summary,
    level,
    measured,
    probes_of,
)
from vitcf.book.verdicts import OURS_HEAD, OURS_INSTANCE, OURS_KNN, PAPER_VERDICT, claims_table
from vitcf.model.methods import make_method


# --- display -----------------------------------------------------------------------------------------

def full_table(frame: pd.DataFrame, index: bool = True):
    """`frame` for display with every cell's text in full (a DataFrame's own display cuts long text with
    "..."): wrapped, left-aligned; its index hidden unless `index`."""
    styler = frame.style.set_properties(**{"white-space": "normal", "text-align": "left"})
    return styler if index else styler.hide(axis="index")


RATE_COLUMNS = ("learning rate", "lr")  # shown in their shortest form (0.005), not to two decimals
MISSING = "—"  # a cell with no value (a spread over one seed, a state a method has no form in, no records yet)


def reader_style(frame: pd.DataFrame):
    """`frame` styled for reading: no index, whole numbers with thousands separators, rates in their
    shortest form, other numbers to two decimals, MISSING where there is no value."""
    formats = {}
    for column in frame.columns:
        if pd.api.types.is_integer_dtype(frame[column]):
            formats[column] = "{:,}"
        elif pd.api.types.is_float_dtype(frame[column]):
            formats[column] = "{:g}" if column in RATE_COLUMNS else "{:.2f}"
    return frame.style.hide(axis="index").format(formats, na_rep=MISSING)


def collapsible(table, summary: str, filename: str):
    """A long table (a DataFrame or its Styler) folded under `summary`, with its rows as a CSV download
    (a data: link, so it works in the static book, offline). The page stays readable; nothing is cut."""
    from html import escape
    from urllib.parse import quote

    from IPython.display import HTML

    if isinstance(table, pd.DataFrame):
        frame, styler = table, reader_style(table)
    else:  # a Styler: its data, as styled
        frame, styler = table.data, table
    csv = frame.to_csv(index=False)
    link = (f'<a download="{escape(filename)}" href="data:text/csv;charset=utf-8,{quote(csv)}">'
            f"download the {len(frame)} rows as CSV</a>")
    return HTML(f"<details class=\"vitcf-table\"><summary>{escape(summary)} ({len(frame)} rows; open to read)</summary>"
                f"<p>{link}</p>{styler.to_html()}</details>")


# --- the protocol and the backbone ---------------------------------------------------------------------

GRID_WORDS = {"grid": "configurations, the paper's rows (the table of reported results below)",
              "design": "design points (the design-space page)", "rates": "points of the learning-rate axis",
              "schedule": "points of the schedule-length axis", "control": "positive-control runs"}


def readable(value) -> str:
    """A setting as a reader reads it: no tuple, dict or None reprs, numbers in their shortest form."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return "; ".join(f"{k.replace('_', ' ')}: {readable(v)}" for k, v in value.items()) or "none"
    if isinstance(value, (list, tuple)):
        return ", ".join(readable(v) for v in value) or "none"
    return str(value)


def protocol_table(preset) -> pd.DataFrame:
    """A preset's settings, one row each in words; the grids are summarised (count and where they are shown)."""
    rows = {}
    for key, value in dataclasses.asdict(preset).items():
        if key == "description":
            continue
        rows[key.replace("_", " ")] = (f"{len(value)} {GRID_WORDS[key]}" if key in GRID_WORDS and value is not None
                                       else readable(value))
    return pd.DataFrame({"value": list(rows.values())}, index=pd.Index(list(rows), name="setting"))


def architecture_text(arch: dict) -> str:
    """A ViT's architecture as a reader says it: '12 blocks of width 64, 4 heads, 7x7 patches of 28x28
    images with 1 channel', then any other setting in words (timm's keyword names)."""
    phrases = (  # (the settings a phrase needs, the phrase), in reading order
        (("depth", "embed_dim"), lambda a: f"{a['depth']} blocks of width {a['embed_dim']}"),
        (("num_heads",), lambda a: f"{a['num_heads']} heads"),
        (("patch_size",), lambda a: f"{a['patch_size']}x{a['patch_size']} patches"),
        (("img_size",), lambda a: f"of {a['img_size']}x{a['img_size']} images"),
        (("in_chans",), lambda a: f"with {a['in_chans']} channel{'s' if a['in_chans'] != 1 else ''}"))
    said = [(keys, phrase(arch)) for keys, phrase in phrases if set(keys) <= set(arch)]
    listed = ", ".join(text for keys, text in said if keys[0] not in ("img_size", "in_chans"))
    text = " ".join(part for part in [listed, *(t for k, t in said if k[0] in ("img_size", "in_chans"))] if part)
    rest = {k: v for k, v in arch.items() if not any(k in keys for keys, _ in said)}
    if not rest:
        return text
    return f"{text} ({readable(rest)})" if text else readable(rest)


def commit_text(commit: str | None) -> str:
    """Where in the code's history something was made, in words: 'commit 1a2b3c4d5e6f' and whether the
    checkout had changes not yet committed then (git's '-dirty' suffix)."""
    if not commit:
        return "outside a git checkout"
    sha, dirty = commit.removesuffix("-dirty"), commit.endswith("-dirty")
    return f"commit {sha[:12]}" + (", with changes not yet committed" if dirty else "")


def provenance(card: dict) -> pd.DataFrame:
    """The card's facts as a two-column table: what was trained, on what, how long, how well."""
    k = card["quality_bar"]["k"]
    knn, random_init, pixels = (card_knn(card, which) for which in ("pretrained", "random_init", "raw_pixels"))
    config = card["config"]
    wall = card.get("wall_seconds") or card["train_seconds"]
    rows = {
        "backbone": f"{card['backbone']}: {architecture_text(card['architecture'])}",
        "pre-training": f"DINO on {card['data']['images']:,} {card['data']['dataset']} training images "
                        f"(labels unused), {config['epochs']} epochs, batch {config['batch_size']}, seed {card['seed']}",
        "hardware": card["environment"]["hardware"],
        "wall time": f"{wall / 60:.1f} min ({card['images_per_second']:,.0f} images/s while training)",
        f"k-NN accuracy, k={k}": f"{knn[k]:.2f}% (random init: {random_init[k]:.2f}%"
                                 + (f"; raw pixels: {pixels[k]:.2f}%)" if k in pixels else ")"),
        "quality bar": quality_text(card["quality_bar"]),
        "k-NN protocol": card["knn"]["protocol"],
        "weights": f"{card['weights']['file']}, {card['weights']['bytes']:,} bytes, sha256 {card['weights']['sha256']}",
        "made": f"{card['created_at']}, {commit_text(card['environment']['git_commit'])}",
    }
    return pd.DataFrame({"": list(rows.values())}, index=pd.Index(list(rows), name="pre-trained backbone"))


def recipe_table(card: dict) -> pd.DataFrame | None:
    """The recipe search behind the weights (benchmarks/pretrain_recipes.py), one row per candidate."""
    search = card.get("recipe_search")
    if not search:
        return None
    chosen = (search.get("chosen") or {}).get("name")
    rows = [{"candidate": t["name"], "settings changed": ", ".join(f"{k}={v}" for k, v in t["overrides"].items()),
             "k-NN k=20 (%)": round(t["knn"], 2), "images/s (one thread)": round(t["images_per_second"]),
             "chosen": "yes" if t["name"] == chosen else ""} for t in search["trials"]]
    return pd.DataFrame(rows).set_index("candidate")


def paper_reference() -> pd.DataFrame:
    """The paper's reported table (CIFAR-100 / IN-1K), with the drop from DINO's published k-NN."""
    rows = []
    for row in PAPER_ROWS:
        method = make_method(row.method, **row.hparams)
        rows.append({"method": method.label, "family": method.family, "trainable params (reported)": row.params_text,
                     "CIFAR-100 (%)": row.cifar100, "IN-1K k-NN (%)": row.in1k,
                     "drop from 76.1 (points)": round(DINO_VITB16_KNN - row.in1k, 2), "mean (%)": row.mean,
                     "lr": row.lr, "warm-up steps": row.warmup})
    return pd.DataFrame(rows).set_index("method")


def timing_table(study: Study) -> pd.DataFrame:
    """Measured seconds per run (training, evaluation with its probes, in all) and training images/s."""
    rows = [{"method": r["label"], "seed": r["seed"], "train (s)": round(r["timings"]["train_seconds"], 1),
             "eval (s)": round(r["timings"]["eval_seconds"], 1), "total (s)": round(r["timings"]["total_seconds"], 1),
             "training images/s": round(r["timings"]["images_per_second"])} for r in study.runs]
    return pd.DataFrame(rows).set_index(["method", "seed"])


# --- results ------------------------------------------------------------------------------------------

def results_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: mean over seeds (± standard deviation where there are several).

    Every probe of the pre-training domain side by side, each as its accuracy after fine-tuning and
    its drop from the pre-trained backbone: the k-NN probe (the paper's), the linear head (and, where the
    records carry it, the drop of a head re-fitted on each run's own features), and the instance-retrieval
    probe where the records carry it.
    """
    summary = label_summary(frame).set_index("label")
    grouped = frame.groupby("label")

    def cell(column: str):
        mean, std = grouped[column].mean(), grouped[column].std()
        return [f"{mean[label]:.2f}" + (f" ± {std[label]:.2f}" if summary.loc[label, "n"] > 1 else "")
                for label in summary.index]

    columns = {
        "family": summary["family"],
        "trainable params": [f"{n:,}" for n in summary["trainable_params"]],
        **({"learning rate": [f"{rate:g}" for rate in grouped["lr"].first().reindex(summary.index)]}
           if "lr" in frame and frame["lr"].notna().all() else {}),
        "seeds": summary["n"],
        "new domain (%)": cell("new_domain_accuracy"),
        f"k-NN probe (%), k={HEADLINE_K}": cell("pretrain_knn"),
        "k-NN drop (points)": cell("drop"),
        "linear-head probe (%)": cell("linear_head_after"),
        "linear-head drop (points)": cell("linear_head_drop"),
    }
    if "linear_head_refit_drop" in frame and frame["linear_head_refit_drop"].notna().all():
        columns["re-fitted head drop (points)"] = cell("linear_head_refit_drop")
    if measured(frame, INSTANCE):
        columns |= {f"instance retrieval (%), k={HEADLINE_K}": cell(INSTANCE.accuracy),
                    "instance drop (points)": cell(INSTANCE.drop)}
    return pd.DataFrame(columns, index=pd.Index(summary.index, name="method"))


DESIGN_COLUMNS = {"lr": "learning rate", "trainable_params": "trainable params",
                  "new_domain_accuracy": "new domain (%)", "new_domain_sd": "new domain sd",
                  "pretrain_knn": f"k-NN probe (%), k={HEADLINE_K}",
                  "pretrain_knn_sd": "k-NN sd", "drop": "k-NN drop (points)",
                  "linear_head_after": "linear-head probe (%)", "linear_head_sd": "linear-head sd",
                  "linear_head_drop": "linear-head drop (points)",
                  "instance_after": f"instance retrieval (%), k={HEADLINE_K}", "instance_sd": "instance sd",
                  "instance_drop": "instance drop (points)"}


def design_table(design: pd.DataFrame) -> pd.DataFrame:
    """`frames.design_frame` as the design page shows it: each probe's accuracy and drop side by side
    (the instance probe's only where the records measured it)."""
    table = design.drop(columns=["family"]).round(2).assign(lr=design["lr"])
    if not measured(design, INSTANCE, (INSTANCE.accuracy, INSTANCE.drop)):
        table = table.drop(columns=[INSTANCE.accuracy, DESIGN_SD[INSTANCE.name], INSTANCE.drop])
    return table.rename(columns=DESIGN_COLUMNS)


def reversibility_table(records: list[dict], k: int = HEADLINE_K) -> pd.DataFrame:
    """Per reversible run and state: the new-domain accuracy and the drop of both probes of the
    pre-training domain (`curve_frames.reversibility_frame`, states as columns), two decimals; a state a
    method has no form in (block expansion cannot be merged) reads MISSING."""
    values = {"new_domain_accuracy": "new domain (%)", "drop": f"k-NN drop (points), k={k}",
              "linear_head_drop": "linear-head drop (points)"}
    frame = reversibility_frame(records, k)
    table = frame.pivot_table(index=["label", "seed"], columns="state", values=list(values), sort=False)
    states = list(max(records, key=lambda r: len(r["states"]))["states"])  # adapted, merged, removed
    states += [s for s in table.columns.get_level_values(1).unique() if s not in states]
    shown = [v for v in values if v in table.columns.get_level_values(0)]  # no linear head in older records
    columns = pd.MultiIndex.from_tuples([(v, s) for v in shown for s in states if (v, s) in table.columns])
    table = table[columns].rename(columns=values, level=0).rename_axis(columns=[None, "state"])
    return table.map(lambda v: MISSING if pd.isna(v) else f"{v:.2f}")


def runs_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Every run of the axes, one row each: nothing averaged away."""
    names = {"new_domain_accuracy": "new domain (%)"}
    for p in probes_of(frame, with_baseline=False):
        names |= {p.accuracy: f"{p.name} (%)", p.drop: f"{p.adjective} drop"}
    table = frame[["label", "lr", "steps", "seed", *names, "run"]].rename(columns={
        "label": "method", "lr": "learning rate", "run": "record", **names})
    order = table["method"].map(index_of(AXIS_LABELS))
    numbers = list(names.values())
    return table.assign(_o=order).sort_values(["_o", "steps", "learning rate", "seed"]).drop(columns="_o") \
        .reset_index(drop=True).round({column: 2 for column in numbers})


def runs_view(frame: pd.DataFrame):
    """`runs_table` for display: every row shown (no truncation), rates as written, accuracies to 2 decimals."""
    table = runs_table(frame)
    numbers = {column: "{:.2f}" for column in table.columns if table[column].dtype.kind == "f"}
    return table.style.format({**numbers, "learning rate": "{:g}"}).hide(axis="index").set_table_styles(
        [{"selector": "td, th", "props": "padding: 0.1em 0.6em; text-align: right"}])


def probe_range_table(baseline: dict | None, control: pd.DataFrame | None = None, k: int = 20) -> pd.DataFrame:
    """One row per probe: raw pixels, random init and the pre-trained backbone on the same bank and
    queries, the room pre-training made (pre-trained - random init), and each positive control's
    accuracy after its run (mean over seeds)."""
    rows = []
    controls = label_summary(control) if control is not None and not control.empty else None
    for probe in (KNN, HEAD, INSTANCE):
        pretrained = level(baseline, "pretrained", probe, k)
        if math.isnan(pretrained):
            continue
        row = {"probe": probe.name + (f", k={k}" if probe is not HEAD else ""),
               "raw pixels (%)": level(baseline, "raw_pixels", probe, k),
               "random init (%)": level(baseline, "random_init", probe, k),
               "pre-trained (%)": pretrained}
        row["learned margin (points)"] = pretrained - row["random init (%)"]
        if controls is not None and measured(controls, probe):
            for _, c in controls.iterrows():
                row[f"{c['label']} (%)"] = c[probe.accuracy]
        rows.append(row)
    return pd.DataFrame(rows).set_index("probe").round(2) if rows else pd.DataFrame()


def domains_table(far: pd.DataFrame, near: pd.DataFrame) -> pd.DataFrame:
    """The near and the far domain side by side per configuration: new-domain accuracy and each probe's drop."""
    frame = domains_frame(far, near)
    order = list(dict.fromkeys(frame["label"]))
    table = frame.pivot_table(index="label", columns=["probe", "domain"], values="drop").reindex(order)
    probes = [p.name for p in PROBES]
    table = table[sorted(table.columns, key=lambda c: (probes.index(c[0]), [NEAR, FAR].index(c[1])))]
    table.columns = [f"{probe} drop, {domain}" for probe, domain in table.columns]
    learnt = frame.drop_duplicates(["label", "domain"]).pivot(index="label", columns="domain",
                                                               values="new_domain_accuracy").reindex(order)
    learnt = learnt[[d for d in (NEAR, FAR) if d in learnt.columns]]
    learnt.columns = [f"new domain (%), {domain}" for domain in learnt.columns]
    return pd.concat([learnt, table], axis=1).round(2).rename_axis("method")


# --- claims and intervals -------------------------------------------------------------------------------

def claims_view(paper: pd.DataFrame, ours: pd.DataFrame, runs: list[dict], k: int = 20):
    """The paper's claims as the book opens with them: the paper's verdict beside ours (k-NN, with the
    evidence in full), and our verdicts by the other probes; a Styler, no index, nothing cut."""
    table = claims_table(paper, ours, runs, k).reset_index()
    shown = {"claim": "claim", PAPER_VERDICT: "paper", OURS_KNN: "ours (k-NN)",
             "our numbers, k-NN": "our evidence (k-NN), points with 95% interval",
             OURS_INSTANCE: "ours (instance retrieval)", OURS_HEAD: "ours (linear head)"}
    return full_table(table[[c for c in shown if c in table.columns]].rename(columns=shown), index=False)


def drop_cells(table: pd.DataFrame) -> pd.DataFrame:
    """`drop_table` as one row per configuration and one column per probe: "drop [low, high]" (points)."""
    if table.empty:
        return pd.DataFrame()
    cells = table.assign(cell=[bracket(d, lo, hi) for d, lo, hi in zip(table["drop"], table["low"], table["high"])])
    wide = cells.pivot(index="label", columns="probe", values="cell")
    wide = wide.reindex(index=list(dict.fromkeys(table["label"])), columns=list(dict.fromkeys(table["probe"])))
    wide.columns = [f"{probe} drop (points)" for probe in wide.columns]
    wide.index.name = "configuration"
    return wide


def resolution_effect_view(effects: pd.DataFrame) -> pd.DataFrame:
    """`evidence.resolution_effects` as the page shows it: one row per family and lower size, a column per probe."""
    if effects.empty:
        return pd.DataFrame()
    cells = effects.assign(cell=[f"{bracket(e, lo, hi)} {v}" for e, lo, hi, v in
                                 zip(effects["effect"], effects["low"], effects["high"], effects["verdict"])])
    wide = cells.pivot(index=["label", "source_size"], columns="probe", values="cell")
    wide = wide.reindex(columns=[p for p in RESOLUTION_PROBES if p in set(effects["probe"])])
    wide = wide.reindex(resolution_order(wide.index))
    native = int(effects["native"].iloc[0])
    wide.columns = [f"{probe}: drop at this size minus at {native} px" for probe in wide.columns]
    wide.index.names = ["method", "source size (px)"]
    return wide.reset_index()


def budget_runs_table(summary: dict):
    """The timed runs of a budget benchmark (`benchmarks/mini_budget.py`'s document), one row per run:
    seconds to one decimal, images per second whole, no index."""
    frame = pd.DataFrame(summary["runs"]).rename(columns={"seconds": "seconds (incl. probes)",
                                                          "train_images_per_second": "training images/s"})
    return frame.style.hide(axis="index").format({"seconds (incl. probes)": "{:,.1f}", "training images/s": "{:,.0f}"})
