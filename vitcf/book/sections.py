"""Page sections put together from several pieces: the pre-trained backbone's, and the paper domains' table.

The backbone's section: its provenance, its verdict, its learning curve, its recipe search.
"""

from __future__ import annotations

import pandas as pd

from vitcf.book.curve_charts import pretrain_curve_chart
from vitcf.book.curve_frames import pretrain_curve_frame
from vitcf.book.pages import load_study, repo_relative, weights_card
from vitcf.book.setup_notes import backbone_note
from vitcf.book.site import embed
from vitcf.book.stats import HEADLINE_K, label_summary
from vitcf.book.tables import MISSING, provenance, recipe_table
from vitcf.model.backbones import get_spec, weights_dir


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
                        f"(`{repo_relative(weights_dir() / spec.shipped)}`); `vitcf pretrain --preset {preset.backbone}` "
                        "makes both.")
    return Markdown(f"The `{preset.backbone}` backbone starts from its published weights ({spec.hub_id}, "
                    "fetched through the Hugging Face hub cache).")


def backbone_extras(preset) -> list:
    """What the backbone section shows below the card: the verdict in words, the learning curve and the
    recipe search (each only where the card holds it)."""
    from IPython.display import Markdown

    card = weights_card(preset.backbone) if preset.pretrained else None
    if card is None:
        return []
    shown = [Markdown(backbone_note(card))]
    if not pretrain_curve_frame(card).empty:
        shown += [Markdown(f"**Learning curve.** {card['learning_curve']['protocol'].rstrip('.')}."),
                  embed(pretrain_curve_chart(card))]
    table = recipe_table(card)
    if table is not None:
        why = (card["recipe_search"].get("chosen") or {}).get("why", "")
        shown += [Markdown(f"**Recipe search.** {card['recipe_search']['protocol'].rstrip('.')}. {why}"), table]
    return shown


def paper_domains_table(domains: tuple[str, ...]) -> pd.DataFrame:
    """Per `paper-<domain>` preset: its records' configurations and seeds (mean over seeds), or a row
    saying that none is recorded and what to run (`tables.MISSING` in its cells)."""
    rows = []
    for domain in domains:
        study = load_study(f"paper-{domain}")
        if study.empty or study.overridden:
            rows.append({"preset": f"paper-{domain}", "configuration": MISSING, "seeds": 0,
                         "new-domain accuracy (%)": MISSING, f"pre-training k-NN k={HEADLINE_K} (%)": MISSING,
                         "note": f"no records yet: vitcf sweep --preset paper-{domain}" if not study.overridden
                         else f"this build shows {study.preset} in place of it"})
            continue
        for row in label_summary(study.frame()).itertuples():
            rows.append({"preset": f"paper-{domain}", "configuration": row.label, "seeds": row.n,
                         "new-domain accuracy (%)": round(row.new_domain_accuracy, 2),
                         f"pre-training k-NN k={HEADLINE_K} (%)": round(row.pretrain_knn, 2), "note": ""})
    return pd.DataFrame(rows)
