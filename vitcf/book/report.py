"""The book's view of the study: which records a page shows, and the tables and sentences made of them.

The book's results pages (notebooks/mini_study.ipynb, paper_scale.ipynb, discussion.ipynb) name
their preset in a papermill parameters cell and call `load_study`. Every number they print comes
from the records through this module; when a preset has no records yet, the page says so and how to
make them instead of showing a number.

Two environment variables choose what a build shows (both are printed on every results page):
VITCF_RESULTS, the folder holding one sub-folder per preset (default: the checkout's `results/`),
and VITCF_BOOK_PRESET, which makes every results page show that preset's records instead of its
own. The test suite builds the book on the `smoke` preset this way, in seconds.
"""

from __future__ import annotations

import dataclasses

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from vitcf.base.io import read_json
from vitcf.engine import records
from vitcf.model.backbones import get_spec, weights_dir
from vitcf.base.paper import DINO_VITB16_KNN, PAPER_ROWS
from vitcf.model.methods import make_method
from vitcf.engine.presets import get_preset

RESULTS_ENV = "VITCF_RESULTS"
PRESET_ENV = "VITCF_BOOK_PRESET"
REPO = records.REPO
HEADLINE_K = 20  # DINO's headline k-NN neighbourhood


def results_root() -> Path:
    """VITCF_RESULTS if set, else the checkout's results/ (pages run with their own folder as cwd)."""
    if os.environ.get(RESULTS_ENV):
        return Path(os.environ[RESULTS_ENV])
    return records.RESULTS_ROOT


@dataclass
class Study:
    """The records of one preset as a page shows them."""

    preset: str  # the preset whose records these are
    requested: str  # the page's own preset (differs when VITCF_BOOK_PRESET overrides it)
    folder: Path
    runs: list[dict]
    baseline: dict | None
    failed: list[str] = field(default_factory=list)  # runs that left an error file and no record
    grid: str = "core"  # the preset's grid these runs belong to (see `load_study`)
    invalid: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason) of untrusted records

    @property
    def empty(self) -> bool:
        return not self.runs

    @property
    def overridden(self) -> bool:
        return self.preset != self.requested

    def frame(self, k: int = HEADLINE_K) -> pd.DataFrame:
        return records.records_frame(self.runs, k=k)

    def source(self) -> str:
        """One Markdown sentence: where the numbers on this page come from."""
        seeds = sorted({r["seed"] for r in self.runs})
        if self.runs:
            text = (f"Numbers on this page: {len(self.runs)} run record(s) of the `{self.preset}` preset "
                    f"({len({r['label'] for r in self.runs})} configurations, seeds {', '.join(map(str, seeds))}) "
                    f"read from `{_shown(self.folder)}` when this page was built.")
        else:
            text = (f"No run record of the `{self.preset}` preset was in `{_shown(self.folder)}` when this page "
                    f"was built.")
        if self.failed:
            text += f" {len(self.failed)} run(s) failed and have no record: {', '.join(self.failed)}."
        if self.invalid:
            text += (f" **{len(self.invalid)} record(s) in the folder are invalid and not shown:** "
                     + "; ".join(f"`{name}` ({reason})" for name, reason in self.invalid) + ".")
        if self.overridden:
            text += (f" **This build shows the `{self.preset}` preset in place of this page's `{self.requested}` "
                     f"({PRESET_ENV}={self.preset}); its numbers test the book's wiring and say nothing about "
                     f"the study.**")
        return text


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def load_study(preset: str, grid: str = "core") -> Study:
    """The records of `preset`'s `grid` (or VITCF_BOOK_PRESET's preset's) under `results_root()`.

    "core" holds the paper's rows, "design" the design space around them (`Preset.points`): both
    live in the preset's one folder, and a page shows only the runs of the grid it asks for (a run
    with a changed schedule, e.g. `vitcf run --steps 10`, belongs to neither).
    """
    from vitcf.engine.naming import grid_key, grid_keys

    get_preset(preset)  # an unknown name fails here, naming the allowed ones
    shown = os.environ.get(PRESET_ENV) or preset
    keys = grid_keys(shown, grid)
    folder = results_root() / shown
    valid, invalid = records.scan(folder)
    # Labels as this version names the configurations (records made when surgical blocks were counted
    # from 0 read as the pages count them, from 1).
    runs = [r | {"label": make_method(r["method"], **r["hparams"]).label} for r in valid if grid_key(r["run"]) in keys]
    invalid = [(path.name, reason) for path, reason in invalid]
    baseline = None
    if (folder / "baseline.json").is_file():
        try:
            baseline = records.check(folder / "baseline.json", "baseline")
        except records.InvalidRecordError as err:
            invalid.append(("baseline.json", err.reason))
    names = {r["run"] for r in runs}
    errors = (p.name[: -len(".error.json")] for p in folder.glob("*.error.json")) if folder.is_dir() else ()
    failed = sorted(name for name in errors if name not in names and grid_key(name) in keys)
    return Study(shown, preset, folder, runs, baseline, failed, grid, invalid)


def missing_runs(study: Study) -> str:
    """What to run to fill a page whose preset has no records yet (Markdown)."""
    preset = get_preset(study.preset)
    sweep = f"vitcf sweep --preset {study.preset}" + ("" if study.grid == "core" else f" --grid {study.grid}")
    text = f"No run of the `{study.preset}` preset is recorded in `{_shown(study.folder)}` yet."
    if study.failed:
        text += f" {len(study.failed)} run(s) failed: see their `.error.json` files."
    weights = weights_card(preset.backbone)
    spec = get_spec(preset.backbone)
    if preset.pretrained and spec.shipped is not None and weights is None:
        text += (f" The `{preset.backbone}` backbone's pre-trained weights are not in this checkout either: "
                 f"`vitcf pretrain --preset {preset.backbone}` makes them (about 80 minutes on two CPU cores; see the pre-training "
                 f"notebook), then `{sweep}` fills this page.")
    else:
        text += f" `{sweep}` fills this page."
    return text


# --- the backbone's provenance ---------------------------------------------------------------------

def weights_card(backbone: str) -> dict | None:
    """The provenance card written beside a shipped backbone's weights (`vitcf pretrain`), if any."""
    spec = get_spec(backbone)
    if spec.shipped is None:
        return None
    card = (weights_dir() / spec.shipped).with_suffix(".json")
    if not card.is_file():
        return None
    try:
        return records.check(card, "card")
    except records.InvalidRecordError as err:
        import warnings

        warnings.warn(f"{err}: the book shows no card", stacklevel=2)
        return None


def card_knn(card: dict, which: str) -> dict[int, float]:
    """A card's k-NN accuracies ("pretrained", "random_init" or "raw_pixels") by k ({} if not recorded)."""
    return {int(key): value for key, value in card["knn"].get(which, {}).items()}


def provenance(card: dict) -> pd.DataFrame:
    """The card's facts as a two-column table: what was trained, on what, how long, how well."""
    k = card["quality_bar"]["k"]
    knn, random_init, pixels = (card_knn(card, which) for which in ("pretrained", "random_init", "raw_pixels"))
    config = card["config"]
    wall = card.get("wall_seconds") or card["train_seconds"]
    rows = {
        "backbone": f"{card['backbone']}: {card['architecture']}",
        "pre-training": f"DINO on {card['data']['images']:,} {card['data']['dataset']} training images "
                        f"(labels unused), {config['epochs']} epochs, batch {config['batch_size']}, seed {card['seed']}",
        "hardware": card["environment"]["hardware"],
        "wall time": f"{wall / 60:.1f} min ({card['images_per_second']:,.0f} images/s while training)",
        f"k-NN accuracy, k={k}": f"{knn[k]:.2f}% (random init: {random_init[k]:.2f}%"
                                 + (f"; raw pixels: {pixels[k]:.2f}%)" if k in pixels else ")"),
        "quality bar": quality_text(card["quality_bar"]),
        "k-NN protocol": card["knn"]["protocol"],
        "weights": f"{card['weights']['file']}, {card['weights']['bytes']:,} bytes, sha256 {card['weights']['sha256']}",
        "made": f"{card['created_at']} at commit {card['environment']['git_commit']}",
    }
    return pd.DataFrame({"": list(rows.values())}, index=pd.Index(list(rows), name="pre-trained backbone"))


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


def backbone_extras(preset) -> list:
    """What the backbone section shows below the card: the verdict in words, the learning curve and the
    recipe search (each only where the card holds it)."""
    from IPython.display import Markdown

    card = weights_card(preset.backbone) if preset.pretrained else None
    if card is None:
        return []
    from vitcf.book.plots import embed, pretrain_curve_chart, pretrain_curve_frame

    shown = [Markdown(backbone_note(card))]
    if not pretrain_curve_frame(card).empty:
        shown += [Markdown(f"**Learning curve.** {card['learning_curve']['protocol'].rstrip('.')}."),
                  embed(pretrain_curve_chart(card))]
    table = recipe_table(card)
    if table is not None:
        why = (card["recipe_search"].get("chosen") or {}).get("why", "")
        shown += [Markdown(f"**Recipe search.** {card['recipe_search']['protocol'].rstrip('.')}. {why}"), table]
    return shown


def pixels_comparison(card: dict | None) -> str:
    """One clause: the backbone's k-NN accuracy against the raw pixels', from its card (Markdown)."""
    if card is None or "raw_pixels" not in card.get("knn", {}):
        return "no card with a raw-pixel comparison is in this checkout"
    k = card["quality_bar"]["k"]
    ours, pixels = card_knn(card, "pretrained")[k], card_knn(card, "raw_pixels")[k]
    relation = "below" if ours < pixels else "above"
    return (f"its CLS features score {ours:.2f}% under the k-NN probe (k={k}), {abs(ours - pixels):.2f} points "
            f"{relation} the raw pixels' {pixels:.2f}%")


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


# --- tables ----------------------------------------------------------------------------------------

def results_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: mean over seeds (± standard deviation where there are several).

    Every probe of the pre-training domain side by side, each as its accuracy after fine-tuning and
    its drop from the pre-trained backbone: the k-NN probe (the paper's), the linear head (and, where the
    records carry it, the drop of a head re-fitted on each run's own features), and the instance-retrieval
    probe where the records carry it.
    """
    from vitcf.book.plots import INSTANCE, label_summary, measured

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
    """`plots.design_frame` as the design page shows it: each probe's accuracy and drop side by side
    (the instance probe's only where the records measured it)."""
    from vitcf.book.plots import DESIGN_SD, INSTANCE, measured

    table = design.drop(columns=["family"]).round(2).assign(lr=design["lr"])
    if not measured(design, INSTANCE, (INSTANCE.accuracy, INSTANCE.drop)):
        table = table.drop(columns=[INSTANCE.accuracy, DESIGN_SD[INSTANCE.name], INSTANCE.drop])
    return table.rename(columns=DESIGN_COLUMNS)


def reversibility_table(records: list[dict], k: int = HEADLINE_K) -> pd.DataFrame:
    """Per reversible run and state: the new-domain accuracy and the drop of both probes of the
    pre-training domain (`plots.reversibility_frame`, states as columns)."""
    from vitcf.book.plots import reversibility_frame

    values = {"new_domain_accuracy": "new domain (%)", "drop": f"k-NN drop (points), k={k}",
              "linear_head_drop": "linear-head drop (points)"}
    frame = reversibility_frame(records, k)
    table = frame.pivot_table(index=["label", "seed"], columns="state", values=list(values), sort=False)
    states = list(max(records, key=lambda r: len(r["states"]))["states"])  # adapted, merged, removed
    states += [s for s in table.columns.get_level_values(1).unique() if s not in states]
    shown = [v for v in values if v in table.columns.get_level_values(0)]  # no linear head in older records
    columns = pd.MultiIndex.from_tuples([(v, s) for v in shown for s in states if (v, s) in table.columns])
    return table[columns].rename(columns=values, level=0).rename_axis(columns=[None, "state"]).round(2)


def paper_reference() -> pd.DataFrame:
    """The paper's reported table (CIFAR-100 / IN-1K), with the drop from DINO's published k-NN."""
    from vitcf.model.methods import make_method

    rows = []
    for row in PAPER_ROWS:
        method = make_method(row.method, **row.hparams)
        rows.append({"method": method.label, "family": method.family, "trainable params (reported)": row.params_text,
                     "CIFAR-100 (%)": row.cifar100, "IN-1K k-NN (%)": row.in1k,
                     "drop from 76.1 (points)": round(DINO_VITB16_KNN - row.in1k, 2), "mean (%)": row.mean,
                     "lr": row.lr, "warm-up steps": row.warmup})
    return pd.DataFrame(rows).set_index("method")


def paper_chart_frame() -> pd.DataFrame:
    """The paper's points in the columns `plots.tradeoff_chart` draws, against DINO's 76.1 k-NN."""
    from vitcf.book.plots import paper_frame

    frame = paper_frame()
    return frame.assign(pretrain_knn_baseline=DINO_VITB16_KNN, drop=DINO_VITB16_KNN - frame["pretrain_knn"])


def timing_table(study: Study) -> pd.DataFrame:
    """Measured seconds per run (training, evaluation with its probes, in all) and training images/s."""
    rows = [{"method": r["label"], "seed": r["seed"], "train (s)": round(r["timings"]["train_seconds"], 1),
             "eval (s)": round(r["timings"]["eval_seconds"], 1), "total (s)": round(r["timings"]["total_seconds"], 1),
             "training images/s": round(r["timings"]["images_per_second"])} for r in study.runs]
    return pd.DataFrame(rows).set_index(["method", "seed"])


def timing_summary(study: Study) -> str:
    """One Markdown sentence: the runs' summed time per seed, on which hardware."""
    if study.empty:
        return missing_runs(study)
    seconds = sum(r["timings"]["total_seconds"] for r in study.runs)
    seeds = len({r["seed"] for r in study.runs})
    hardware = sorted({r["environment"]["hardware"] for r in study.runs})
    return (f"The {len(study.runs)} recorded runs took {seconds:,.0f} s ({seconds / 3600:.2f} h) in all, "
            f"{seconds / seeds:,.0f} s per seed, on {'; '.join(hardware)}. The baseline probe, computed once per "
            f"results folder, comes on top.")


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


def with_control(frame: pd.DataFrame, control: pd.DataFrame | None) -> pd.DataFrame:
    """The core grid's frame with the positive control's rows after it (family "control")."""
    return frame if control is None or control.empty else pd.concat([frame, control], ignore_index=True)


def full_table(frame: pd.DataFrame, index: bool = True):
    """`frame` for display with every cell's text in full (a DataFrame's own display cuts long text with
    "..."): wrapped, left-aligned; its index hidden unless `index`."""
    styler = frame.style.set_properties(**{"white-space": "normal", "text-align": "left"})
    return styler if index else styler.hide(axis="index")


def collapsible(table, summary: str, filename: str):
    """A long table (a DataFrame or its Styler) folded under `summary`, with its rows as a CSV download
    (a data: link, so it works in the static book, offline). The page stays readable; nothing is cut."""
    from html import escape
    from urllib.parse import quote

    from IPython.display import HTML

    if isinstance(table, pd.DataFrame):
        frame, styler = table, table.style.hide(axis="index")
    else:  # a Styler: its data, as styled
        frame, styler = table.data, table
    csv = frame.to_csv(index=False)
    link = (f'<a download="{escape(filename)}" href="data:text/csv;charset=utf-8,{quote(csv)}">'
            f"download the {len(frame)} rows as CSV</a>")
    return HTML(f"<details class=\"vitcf-table\"><summary>{escape(summary)} ({len(frame)} rows; open to read)</summary>"
                f"<p>{link}</p>{styler.to_html()}</details>")


def shown(study: Study, view):
    """`view(study)` for display, or the Markdown that says what to run when the study has no records."""
    from IPython.display import Markdown

    return Markdown(missing_runs(study)) if study.empty else view(study)


def has_curves(study: Study) -> bool:
    """Whether any run probed the pre-training domain during training (metrics.knn_over_steps)."""
    return any(r["metrics"].get("knn_over_steps") for r in study.runs)


def backbone_view(preset) -> object:
    """The provenance table of a preset's starting weights, or Markdown saying where they come from."""
    from IPython.display import Markdown

    if not preset.pretrained:
        return Markdown(f"The `{preset.name}` preset starts from a randomly initialised `{preset.backbone}` ViT: "
                        "it checks the code path, not the study.")
    card = weights_card(preset.backbone)
    if card is not None:
        return provenance(card)
    spec = get_spec(preset.backbone)
    if spec.shipped is not None:
        return Markdown(f"The `{preset.backbone}` backbone's weights and card are not in this checkout "
                        f"(`{_shown(weights_dir() / spec.shipped)}`); `vitcf pretrain --preset {preset.backbone}` "
                        "makes both.")
    return Markdown(f"The `{preset.backbone}` backbone starts from its published weights ({spec.hub_id}, "
                    "fetched through the Hugging Face hub cache).")


def analyses(study: Study) -> dict[str, list[dict]]:
    """The analysis records (vitcf.engine.analyses) in the study's folder, by analysis name."""
    valid, invalid = records.scan(study.folder / "analyses", "analysis")
    study.invalid.extend((f"analyses/{path.name}", reason) for path, reason in invalid
                         if (f"analyses/{path.name}", reason) not in study.invalid)
    found: dict[str, list[dict]] = {}
    for record in valid:
        found.setdefault(record["analysis"], []).append(record)
    return found


def missing_analysis(study: Study, name: str) -> str:
    """What to run when an analysis has no records (Markdown)."""
    return (f"No `{name}` analysis of the `{study.preset}` preset is recorded in `{_shown(study.folder / 'analyses')}` "
            f"yet; `vitcf analyse --preset {study.preset} --only {name}` runs it.")


# --- more new domains, and the paper-lite preset ---------------------------------------------------

def paper_figure_frame() -> pd.DataFrame:
    """The paper's figure for four more new domains (approximate values read off it), one row per point."""
    from vitcf.base.paper import PAPER_FIGURE

    return pd.DataFrame([{"new domain": domain, "method": method, "new-domain accuracy (%)": new,
                          "IN-1K k-NN (%)": knn, "preset": f"paper-{domain}"}
                         for domain, points in PAPER_FIGURE.items() for method, new, knn in points])


def domains_table(domains: tuple[str, ...]) -> pd.DataFrame:
    """Per `paper-<domain>` preset: its records' configurations and seeds (mean over seeds), or a row
    saying that none is recorded and what to run."""
    rows = []
    for domain in domains:
        study = load_study(f"paper-{domain}")
        if study.empty or study.overridden:
            rows.append({"preset": f"paper-{domain}", "configuration": "-", "seeds": 0,
                         "new-domain accuracy (%)": None, f"pre-training k-NN k={HEADLINE_K} (%)": None,
                         "note": f"no records yet: vitcf sweep --preset paper-{domain}" if not study.overridden
                         else f"this build shows {study.preset} in place of it"})
            continue
        from vitcf.book.plots import label_summary

        for row in label_summary(study.frame()).itertuples():
            rows.append({"preset": f"paper-{domain}", "configuration": row.label, "seeds": row.n,
                         "new-domain accuracy (%)": round(row.new_domain_accuracy, 2),
                         f"pre-training k-NN k={HEADLINE_K} (%)": round(row.pretrain_knn, 2), "note": ""})
    return pd.DataFrame(rows)


def lite_note(study: Study, k: int = HEADLINE_K) -> str:
    """What the paper-lite probe is and how its baseline compares with DINO's IN-1K k-NN (Markdown)."""
    preset = get_preset(study.preset)
    base = study.baseline
    if base is None:
        return (f"No baseline probe of the `{study.preset}` preset is recorded in `{_shown(study.folder)}` yet: "
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
