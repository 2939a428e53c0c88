"""Figures outside the browser's charts: static matplotlib figures and the ipywidgets explorer.

The trade-off plane for print and the glyph domain's samples; the explorer's callbacks need a live kernel.
"""

from __future__ import annotations

import pandas as pd

from vitcf.book.charts import X_TITLE
from vitcf.book.stats import (
    FAMILIES,
    FAMILY_COLOURS,
    HEAD,
    KNN,
    check_reference,
    has_head,
    label_summary,
    probes_of,
    rank_methods,
    tradeoff_score,
)
from vitcf.model.params import summary_count


# --- static figures for print (seaborn, matplotlib) -------------------------------------------------

def tradeoff_figure(frame: pd.DataFrame, *, reference: pd.DataFrame | None = None):
    """The trade-off chart's top view as a static matplotlib Figure (for print and PDF).

    One panel per probe the frame has values for (k-NN, then the linear head), as in the chart.
    Built on a bare Figure, not pyplot, so a notebook cell that returns it shows it once and no
    global figure state piles up across a book build.
    """
    # Imported here: only print needs them, and seaborn is slow to import.
    import seaborn as sns
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    check_reference(frame, reference)
    summary = label_summary(frame)
    probes = probes_of(summary)
    fig = Figure(figsize=(7.5 * len(probes), 5), layout="constrained")
    for ax, probe in zip(fig.subplots(1, len(probes), squeeze=False)[0], probes):
        y = probe.accuracy
        ax.errorbar(summary["new_domain_accuracy"], summary[y],
                    xerr=[summary["new_domain_accuracy"] - summary["new_domain_accuracy_min"],
                          summary["new_domain_accuracy_max"] - summary["new_domain_accuracy"]],
                    yerr=[summary[y] - summary[f"{y}_min"], summary[f"{y}_max"] - summary[y]],
                    fmt="none", ecolor="0.65", elinewidth=1, zorder=1)
        sns.scatterplot(data=summary, x="new_domain_accuracy", y=y, hue="family",
                        hue_order=[f for f in FAMILIES if f in set(summary["family"])], palette=FAMILY_COLOURS,
                        size="trainable_params", size_norm=LogNorm(), sizes=(30, 300), ax=ax, zorder=2,
                        legend="auto" if probe is KNN else False)
        for row in summary.itertuples():
            ax.annotate(row.label, (row.new_domain_accuracy, getattr(row, y)), xytext=(5, 4),
                        textcoords="offset points", fontsize=8)
        if reference is not None and probe is KNN:  # the paper reports the k-NN probe only
            ax.scatter(reference["new_domain_accuracy"], reference["pretrain_knn"], marker="D", facecolors="none",
                       edgecolors=[FAMILY_COLOURS[f] for f in reference["family"]], label="paper (reported)", zorder=2)
        ax.axhline(summary[probe.baseline].mean(), color="0.3", linestyle="--", linewidth=1,
                   label="pre-trained (no forgetting)")
        ax.set(xlabel=X_TITLE, ylabel=probe.title, title=f"Kept, by {probe.words}" if len(probes) > 1 else "")
        if probe is KNN:
            handles, labels = ax.get_legend_handles_labels()
            ax.legend(handles, [_legend_text(text) for text in labels], fontsize=8, loc="best")
    return fig


def _legend_text(text: str) -> str:
    """Seaborn titles its legend sections by column name and prints raw counts: make them readable."""
    titles = {"family": "Family", "trainable_params": "Trainable parameters"}
    if text in titles:
        return titles[text]
    try:
        return summary_count(int(float(text)))
    except ValueError:
        return text


def glyph_samples(rows: int = 4, columns: int = 16):
    """A figure of test glyphs (one per class, in class order), or None where the fonts are not installed."""
    import matplotlib.pyplot as plt

    from vitcf.engine.glyphs import FontsUnavailableError, cached_domain

    try:
        domain = cached_domain()
    except FontsUnavailableError:
        return None
    images, labels = domain.splits["test"]
    picks = [int((labels == c).nonzero()[0][0]) for c in range(min(rows * columns, len(domain.classes)))]
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 0.42, rows * 0.5))
    for ax, index in zip(axes.flat, picks + [None] * (rows * columns - len(picks))):
        ax.axis("off")
        if index is not None:
            ax.imshow(images[index], cmap="gray", vmin=0, vmax=255)
            group = domain.classes[labels[index]]
            ax.set_title(group[0] + (f" +{len(group) - 1}" if len(group) > 1 else ""), fontsize=7, pad=1)
    fig.suptitle(f"Test-split glyphs (unseen typefaces): the first {len(picks)} of {len(domain.classes)} classes; "
                 "+n: n more characters drawn alike, merged into the class", fontsize=8)
    fig.tight_layout()
    plt.close(fig)
    return fig


# --- live explorer for Jupyter (needs a kernel) ---------------------------------------------------

def _ranking_html(ranking: pd.DataFrame) -> str:
    head = [HEAD.accuracy] if has_head(ranking) else []
    shown = ranking[["rank", "label", "family", "new_domain_accuracy", "pretrain_knn", *head, "score"]].rename(columns={
        "new_domain_accuracy": "new-domain acc.", "pretrain_knn": "pre-training k-NN",
        HEAD.accuracy: "pre-training linear head"})
    return shown.to_html(index=False, float_format="{:.2f}".format, border=0)


def explorer(frame: pd.DataFrame, *, weight: float = 0.5):
    """ipywidgets for a live kernel: a w slider and a family dropdown re-rank the methods in a table.

    The score reads the k-NN probe, as the chart's does; the table shows the linear head beside it.

    The static book cannot run these callbacks (use `vitcf.book.charts.tradeoff_chart` there); in Jupyter, Binder or
    Colab they can. The table is `rank_methods` at the widgets' values, so it matches the chart.
    """
    import ipywidgets as widgets

    summary = label_summary(frame)
    tradeoff_score(0.0, 0.0, weight)
    families = [f for f in FAMILIES if f in set(summary["family"])]
    slider = widgets.FloatSlider(value=weight, min=0, max=1, step=0.05, description="w", readout_format=".2f")
    dropdown = widgets.Dropdown(options=["all", *families], value="all", description="family")
    table = widgets.HTML()

    def show(change=None) -> None:
        family = None if dropdown.value == "all" else dropdown.value
        table.value = _ranking_html(rank_methods(frame, slider.value, family))

    slider.observe(show, names="value")
    dropdown.observe(show, names="value")
    show()
    return widgets.VBox([widgets.HBox([slider, dropdown]), table])
