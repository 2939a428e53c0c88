"""The CPU study's two new domains side by side: what the glyph domain is, how long its schedule keeps
the backbone learning, and how each configuration forgets on the near domain (digits) and the far one
(glyphs)."""

from __future__ import annotations

import altair as alt
import pandas as pd

from vitcf.book.plots import BACKGROUND, PROBES, label_summary, measured

NEAR, FAR = "digits (near)", "glyphs (far)"  # how the pages name the two new domains


def glyph_note(runs: list[dict]) -> str:
    """What the glyph domain of these records is, from their recorded provenance (Markdown)."""
    made = next((r["config"].get("new_domain_data") for r in runs if r["config"].get("new_domain_data")), None)
    if made is None:
        return "*These records do not carry the glyph domain's provenance.*"
    config, faces, images = made["config"], made["typefaces"], made["images"]
    merged = [group for group in made["classes"] if len(group) > 1]
    hashes = {r["config"]["new_domain_data"]["sha256"] for r in runs if r["config"].get("new_domain_data")}
    packages = ", ".join(f"{name} {version}" for name, version in made["font_packages"].items() if version)
    return (
        f"**The glyph domain.** {len(made['classes'])} classes: the digits and the Latin, Greek and Cyrillic letters "
        f"of both cases, with characters drawn alike in most typefaces merged into one class ({len(merged)} merged "
        f"groups, e.g. {', '.join(merged[:6])}). Each character is rendered white on black at {config['size']} px from "
        f"{faces['train']} training typefaces and, for the test split, from {faces['test']} typefaces of other design "
        f"lineages ({', '.join(faces['test_lineages'])}), never seen in training: {images['train']:,} training and "
        f"{images['test']:,} test images, each at a random scale ({config['scale'][0]}-{config['scale'][1]} of the "
        f"image), rotation (within ±{config['rotation']:g}°) and position, from a fixed seed. Font packages: "
        f"{packages or 'not recorded'}. The images' sha256 is `{made['sha256'][:16]}…`"
        + (" in every record." if len(hashes) == 1 else f"; **the records hold {len(hashes)} different hashes**.")
    )


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


def learning_note(runs: list[dict], label: str = "Full") -> str:
    """Whether `label`'s held-out accuracy was still rising at mid-schedule (Markdown), from its histories."""
    curves = []
    for record in runs:
        if record["label"] != label:
            continue
        points = {h["step"]: h["selection_accuracy"] for h in record["history"] if "selection_accuracy" in h}
        if points:
            curves.append((record["config"]["train"]["steps"], points))
    if not curves:
        return f"*No {label} record here carries its held-out accuracy over training.*"
    length = curves[0][0]
    mid = min(curves[0][1], key=lambda step: abs(step - length / 2))
    before = max((s for s in curves[0][1] if s < mid), default=None)
    at = [points[mid] for _, points in curves if mid in points]
    prior = [points[before] for _, points in curves if before in points]
    final = [points[max(points)] for _, points in curves]
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    rising = before is not None and mean(at) > mean(prior)
    return (f"{label} fine-tuning's held-out accuracy (mean over {len(curves)} seed(s)) is "
            + (f"{mean(prior):.2f}% at step {before}, " if before is not None else "")
            + f"{mean(at):.2f}% at step {mid}, mid-schedule, and {mean(final):.2f}% at the end ({length} steps): "
            + ("still rising at mid-schedule, so the backbone is still learning the new domain."
               if rising else "no longer rising at mid-schedule: the new domain saturates within this schedule."))


def domains_frame(far: pd.DataFrame, near: pd.DataFrame) -> pd.DataFrame:
    """One row per (configuration, domain, probe) present in both domains' frames: the new-domain accuracy
    and the probe's drop, means over seeds."""
    rows = []
    for domain, frame in ((NEAR, near), (FAR, far)):
        summary = label_summary(frame)
        for probe in PROBES:
            if not measured(summary, probe):
                continue
            for _, row in summary.iterrows():
                rows.append({"label": row["label"], "family": row["family"], "domain": domain, "probe": probe.name,
                             "drop": row[probe.drop], "new_domain_accuracy": row["new_domain_accuracy"]})
    frame = pd.DataFrame(rows, columns=["label", "family", "domain", "probe", "drop", "new_domain_accuracy"])
    both = set(label_summary(far)["label"]) & set(label_summary(near)["label"])
    return frame[frame["label"].isin(both)].reset_index(drop=True)


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


PROBE_PICK = "domain_probe"


def domains_chart(far: pd.DataFrame, near: pd.DataFrame):
    """Each configuration's drop on the near and the far domain, one probe at a time (a dropdown)."""
    frame = domains_frame(far, near)
    probes = list(dict.fromkeys(frame["probe"]))
    pick = alt.param(name=PROBE_PICK, value=probes[0],
                     bind=alt.binding_select(options=probes, name="Probe of the pre-training domain "))
    order = list(dict.fromkeys(frame["label"]))
    base = alt.Chart(frame).transform_filter(f"datum.probe == {PROBE_PICK}")
    bars = base.mark_bar().encode(
        y=alt.Y("label:N", title=None, sort=order),
        yOffset=alt.YOffset("domain:N", sort=[NEAR, FAR]),
        x=alt.X("drop:Q", title="Drop on the pre-training domain (points)"),
        color=alt.Color("domain:N", title="New domain", sort=[NEAR, FAR],
                        scale=alt.Scale(range=["#bab0ac", "#4c78a8"]), legend=alt.Legend(orient="bottom")),
        tooltip=["label:N", "domain:N", "probe:N", alt.Tooltip("drop:Q", format=".2f"),
                 alt.Tooltip("new_domain_accuracy:Q", title="new-domain accuracy", format=".2f")],
    )
    return bars.add_params(pick).properties(
        width=440, height=alt.Step(9), background=BACKGROUND, name="domains_bars",
        title=alt.Title("Forgetting on the near and on the far new domain",
                        subtitle="means over seeds; pick the probe below"))

