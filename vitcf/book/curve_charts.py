"""Altair charts over training steps and of the analyses: forgetting, pre-training, interpolation, drift.

Forgetting during fine-tuning, the backbone's pre-training, interpolation back to the pre-trained
weights, and where fine-tuning changed the network.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from vitcf.book.charts import BACKGROUND, PANEL_WIDTH, X_TITLE, family_colour, family_selection, side_by_side
from vitcf.book.curve_frames import drift_frame, forgetting_curve_frame, interpolation_frame, pretrain_curve_frame
from vitcf.book.stats import FAMILIES, FAMILY_COLOURS, HEAD, INSTANCE, KNN, PROBES, Probe, has_head, label_summary


K_PARAM = "k_pick"
STEP_PARAM = "step_pick"


ALPHA_PARAM = "alpha_pick"


def _one_preset(presets: set[str]) -> None:
    if len(presets) > 1:
        raise ValueError(f"the records mix presets {sorted(presets)}; plot one preset at a time")


# --- forgetting over training steps -------------------------------------------------------------

def forgetting_curve_chart(records: list[dict], *, k: int | None = None):
    """Pre-training-domain accuracy against training step, and every method's accuracy at one step.

    Top: one line per run, for the k-NN probe (k in a dropdown) and, beside it, the linear-head
    probe (drawn where the records' curves carry it). Bottom: the mean over seeds at the probe the
    slider picks, for each probe (the slider moves from probe to probe: the probed steps are spaced
    roughly logarithmically), the picked step marked on the curves. Raises ValueError when no record
    was probed during training (run with `forgetting_steps`, CLI `--forgetting-steps`). `k` is the
    dropdown's starting value (default 20 where measured, the largest k otherwise).
    """
    curves = forgetting_curve_frame(records)
    if curves.empty:
        raise ValueError(f"none of the {len(records)} records has k-NN accuracies over training steps "
                         "(metrics.knn_over_steps); run with forgetting_steps=(...), CLI --forgetting-steps")
    _one_preset(set(curves["preset"]))
    ks = sorted(curves["k"].unique().tolist())
    start = k if k is not None else (20 if 20 in ks else ks[-1])
    if start not in ks:
        raise ValueError(f"k={k!r} was not measured over steps; measured: {ks}")
    steps = sorted(curves["step"].unique().tolist())
    curves = curves.assign(probe=curves["step"].map({step: i for i, step in enumerate(steps)}))
    heads = curves.dropna(subset=["linear_head"]).drop_duplicates(["run", "step"])  # the same on every k's row
    instances = curves.dropna(subset=["instance"])
    pick = alt.param(name=K_PARAM, value=start, bind=alt.binding_select(options=ks, name="k-NN neighbours k "))
    at = alt.param(name=STEP_PARAM, value=len(steps) - 1, bind=alt.binding_radio(
        options=list(range(len(steps))), labels=[f"{step:,}" for step in steps], name="Probed after training step "))
    width = PANEL_WIDTH[1 + (not heads.empty) + (not instances.empty)]  # the panels fit the book's column
    x = alt.X("step:Q", title="Training step", scale=alt.Scale(type="symlog"),  # 0, 1, 10, 100 spread evenly
              axis=alt.Axis(values=steps, labelOverlap="greedy", format="~s"))  # the probed steps, 1 to 20 too

    def views(base: alt.Chart, probe: Probe, column: str, bars_name: str):
        """The probe's curves with the picked step marked, and its bars at that step."""
        what = f"{probe.adjective} accuracy"
        lines = base.mark_line(point=True).encode(
            x=x,
            y=alt.Y(f"{column}:Q", title=probe.title, scale=alt.Scale(zero=False)),
            color=alt.Color("label:N", title="Method", legend=alt.Legend(orient="bottom", columns=4)),
            detail="run:N",
            tooltip=["label:N", "seed:Q", "step:Q", alt.Tooltip(f"{column}:Q", title=what, format=".2f")],
        )
        picked = base.transform_filter(f"datum.probe == {STEP_PARAM}")
        rule = picked.mark_rule(color="gray", strokeDash=[4, 3]).encode(x=x)
        bars = picked.transform_aggregate(
            **{column: f"mean({column})"}, step="max(step)", groupby=["label", "family"]).mark_bar().encode(
            x=alt.X(f"{column}:Q", title=f"{what} at the picked step (%), mean over seeds"),
            y=alt.Y("label:N", title=None, sort="-x"),
            color=family_colour(),
            tooltip=["label:N", "step:Q", alt.Tooltip(f"{column}:Q", title=what, format=".2f")],
        ).properties(name=bars_name)
        title = "Forgetting during fine-tuning" if heads.empty and instances.empty else f"By {probe.words}"
        return alt.layer(lines, rule).properties(width=width, height=300, title=title), bars, picked

    knn_curves, knn_bars, picked = views(alt.Chart(curves).transform_filter(f"datum.k == {K_PARAM}"), KNN, "knn",
                                         "forgetting_at_step")
    caption = picked.transform_aggregate(step="max(step)").transform_calculate(
        text="'after training step ' + datum.step").mark_text(align="right", baseline="top", fontSize=12).encode(
        text="text:N", x=alt.value(width), y=alt.value(-18))
    top, bottom = [knn_curves], [alt.layer(knn_bars, caption).properties(width=width)]
    if not heads.empty:  # its own name: the browser test reads the k-NN bars by theirs
        head_curves, head_bars, _ = views(alt.Chart(heads), HEAD, "linear_head", "linear_head_at_step")
        top.append(head_curves)
        bottom.append(head_bars.properties(width=width))
    if not instances.empty:
        instance_curves, instance_bars, _ = views(alt.Chart(instances).transform_filter(f"datum.k == {K_PARAM}"),
                                                  INSTANCE, "instance", "instance_at_step")
        top.append(instance_curves)
        bottom.append(instance_bars.properties(width=width))
    # The curves colour by method, the bars by family: two colour scales. Shared (Vega-Lite's default for
    # concatenated views) they merge into one whose domain matches no line, and the lines draw unstroked.
    # Each row keeps its scale shared, so a method has one colour in both probes' curves.
    return alt.vconcat(side_by_side(top), side_by_side(bottom)).add_params(pick, at).resolve_scale(
        color="independent").properties(background=BACKGROUND)


# --- the backbone's pre-training ------------------------------------------------------------------

def pretrain_curve_chart(card: dict):
    """k-NN accuracy of the teacher after every pre-training epoch (left) and the DINO loss (right)."""
    frame = pretrain_curve_frame(card)
    if frame.empty:
        raise ValueError("the card has no learning curve (learning_curve.epochs); it predates per-epoch probing")
    x = alt.X("epoch:Q", title="Pre-training epoch", axis=alt.Axis(tickMinStep=1))
    knn = alt.Chart(frame).mark_line(point=True, color=FAMILY_COLOURS["standard"]).encode(
        x=x, y=alt.Y("knn:Q", title="k-NN accuracy, subset probe (%)", scale=alt.Scale(zero=False)),
        tooltip=["epoch:Q", alt.Tooltip("knn:Q", title="k-NN accuracy", format=".2f"),
                 alt.Tooltip("loss:Q", format=".3f")],
    ).properties(width=300, height=220, title="Feature quality")
    loss = alt.Chart(frame).mark_line(point=True, color=FAMILY_COLOURS["LoRA"]).encode(
        x=x, y=alt.Y("loss:Q", title="DINO loss (mean over the epoch)", scale=alt.Scale(zero=False)),
        tooltip=["epoch:Q", alt.Tooltip("loss:Q", format=".3f")],
    ).properties(width=300, height=220, title="Training loss")
    return alt.hconcat(knn, loss).properties(background=BACKGROUND)


# --- analyses beyond the paper ---------------------------------------------------------------------

def interpolation_chart(records: list[dict], frame: pd.DataFrame | None = None, *, k: int = 20, alpha: float = 1.0):
    """Each interpolation run as a curve in the trade-off plane, a slider marking one mixing weight.

    One panel per probe of the pre-training domain: the k-NN probe and, beside it, the linear head
    (where the records carry it). `frame` (records_frame of the same preset) adds the study's fixed
    points (mean over seeds) so the curves can be set against the methods of the paper. The slider
    picks alpha; every curve shows its point at that alpha.
    """
    curves = interpolation_frame(records, k)
    if curves.empty:
        raise ValueError("no interpolation records to plot (vitcf.engine.analyses.interpolation writes them)")
    presets = set(curves["preset"]) | (set(frame["preset"]) if frame is not None and "preset" in frame else set())
    _one_preset(presets)
    alphas = sorted(curves["alpha"].unique().tolist())
    if alpha not in alphas:
        raise ValueError(f"alpha={alpha!r} was not measured; measured: {alphas}")
    step = min((b - a for a, b in zip(alphas, alphas[1:])), default=1.0)
    pick = alt.param(name=ALPHA_PARAM, value=alpha, bind=alt.binding_range(
        min=alphas[0], max=alphas[-1], step=step, name="Mixing weight alpha (0: pre-trained, 1: fine-tuned) "))
    summary = label_summary(frame) if frame is not None else None
    probes = PROBES if has_head(curves, (HEAD.accuracy,)) else (KNN,)
    x = alt.X("new_domain_accuracy:Q", title=X_TITLE, scale=alt.Scale(zero=False))

    def panel(probe: Probe, marked_name: str) -> alt.LayerChart:
        y = alt.Y(f"{probe.accuracy}:Q", title=probe.title, scale=alt.Scale(zero=False))
        base = alt.Chart(curves.dropna(subset=[probe.accuracy]))
        lines = base.mark_line(point=alt.OverlayMarkDef(size=25)).encode(
            x=x, y=y, color=alt.Color("label:N", title="Interpolated run"), detail="run:N", order="alpha:Q",
            tooltip=["label:N", alt.Tooltip("alpha:Q", format=".2f"),
                     alt.Tooltip("new_domain_accuracy:Q", title="new-domain accuracy", format=".2f"),
                     alt.Tooltip(f"{probe.accuracy}:Q", title=f"pre-training, {probe.words}", format=".2f")])
        marked = base.transform_filter(f"abs(datum.alpha - {ALPHA_PARAM}) < 1e-9").mark_point(
            size=180, filled=True, stroke="black").encode(x=x, y=y,
                                                          color=alt.Color("label:N", title="Interpolated run"))
        layers = [lines, marked.properties(name=marked_name)]
        if summary is not None and probe.accuracy in summary.columns:
            layers.insert(0, alt.Chart(summary).mark_point(shape="diamond", size=70, color="gray").encode(
                x=x, y=y, tooltip=[alt.Tooltip("label:N", title="fine-tuning method")]))
            layers.insert(1, alt.Chart(summary).mark_text(align="left", dx=6, fontSize=9, color="gray").encode(
                x=x, y=y, text="label:N"))
        title = "" if len(probes) == 1 else f"Kept, by {probe.words}"
        return alt.layer(*layers).properties(width=440 if len(probes) == 1 else 250, height=320, title=title)

    # The k-NN view keeps its name: the browser test reads its marked points.
    panels = [panel(KNN, "interpolation_marked")] + ([panel(HEAD, "head_marked")] if HEAD in probes else [])
    return side_by_side(panels).add_params(pick).properties(
        background=BACKGROUND, title=alt.Title("Interpolating back to the pre-trained weights",
                                               subtitle="curves: alpha from 0 to 1; grey diamonds: the methods' "
                                                        "own runs"))


def drift_chart(records: list[dict]):
    """Where each method changed the network: CKA with the pre-trained backbone after every block.

    One line per configuration (mean over its seeds); the family dropdown highlights one family.
    """
    frame = drift_frame(records)
    if frame.empty:
        raise ValueError(f"none of the {len(records)} records measured representation drift (metrics.drift)")
    _one_preset(set(frame["preset"]))
    mean = frame.groupby(["label", "family", "block"], as_index=False)["cka"].mean()
    families = [f for f in FAMILIES if f in set(mean["family"])]
    family = family_selection(families)
    return alt.Chart(mean).mark_line(point=True).encode(
        x=alt.X("block:Q", title="After pre-trained block", axis=alt.Axis(tickMinStep=1)),
        y=alt.Y("cka:Q", title="Linear CKA with the pre-trained backbone", scale=alt.Scale(zero=False)),
        color=alt.Color("label:N", title="Method"),
        opacity=alt.condition(family, alt.value(0.95), alt.value(0.12)),
        tooltip=["label:N", "block:Q", alt.Tooltip("cka:Q", format=".4f")],
    ).add_params(family).properties(width=440, height=300, background=BACKGROUND,
                                    title=alt.Title("Where fine-tuning changed the representation",
                                                    subtitle="1: unchanged up to rotation and scale"))
