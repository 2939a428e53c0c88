"""The paper's headline claims tested on a frame, by each probe and at each rate: verdicts, table, sentences.

A claim is tested on the paper's reported numbers (the k-NN probe's alone) or on our records; given the
records with per-query correctness, our verdicts are three-way, from each claim's 95% interval
(`vitcf.book.evidence.claim_intervals`): holds, does not hold, inconclusive.
"""

from __future__ import annotations

import pandas as pd

from vitcf.base.uncertainty import FAILS, HOLDS, INCONCLUSIVE
from vitcf.book import evidence
from vitcf.book.stats import HEAD, INSTANCE, KNN, PROBES, label_summary, probes_of, range_text
from vitcf.book.stats import measured as is_measured


def claims(frame: pd.DataFrame, probe: str = KNN.name) -> list[dict]:
    """The paper's headline claims, each tested on `frame` (the paper's reported numbers, or our records)
    with one probe of the pre-training domain (a `vitcf.book.stats.PROBES` name; the paper's numbers have the
    k-NN probe's only): [{"claim", "holds" (bool, or None when the rows or the probe's values are
    missing), "evidence", "forgetting" (whether the claim reads the probe; the others are about the
    new domain alone)}]."""
    probes = {p.name: p for p in PROBES}
    if probe not in probes:
        raise ValueError(f"unknown probe {probe!r}; allowed: {', '.join(probes)}")
    chosen = probes[probe]
    summary = label_summary(frame).set_index("label")
    measured = is_measured(summary, chosen)
    kept, drop = chosen.accuracy, chosen.drop
    fam = {name: summary[summary["family"] == name] for name in ("standard", "LoRA", "block expansion")}
    out = []

    def add(claim, needed, test, forgetting=False):
        if not all(label in summary.index for label in needed) or any(f.empty for f in fam.values()):
            holds, evidence = None, "rows missing from these records"
        elif forgetting and not measured:
            holds, evidence = None, f"no {chosen.adjective} probe in these numbers"
        else:
            holds, evidence = test()
            holds = bool(holds)
        out.append({"claim": claim, "holds": holds, "evidence": evidence, "forgetting": forgetting})

    def most_forgetting():
        worst = summary[kept].idxmin()
        return worst == "Full", (f"lowest pre-training-domain {chosen.adjective} accuracy: {worst} "
                                 f"({summary.loc[worst, kept]:.2f}%); Full {summary.loc['Full', kept]:.2f}%")

    def blocks_keep():
        lora, blocks = fam["LoRA"], fam["block expansion"]
        return blocks[drop].max() < lora[drop].min(), (
            f"{chosen.adjective} drops: block expansion {range_text(blocks, drop)} points, LoRA {range_text(lora, drop)}")

    def match_full(name):
        def test():
            best = fam[name]["new_domain_accuracy"].idxmax()
            value, full = summary.loc[best, "new_domain_accuracy"], summary.loc["Full", "new_domain_accuracy"]
            return value >= full, f"best {name} ({best}) {value:.2f}% against Full {full:.2f}% on the new domain"
        return test

    def linear_worst_learner():
        worst = summary["new_domain_accuracy"].idxmin()
        return worst == "Linear", (f"lowest new-domain accuracy: {worst} "
                                   f"({summary.loc[worst, 'new_domain_accuracy']:.2f}%)")

    add(evidence.CLAIM_FULL_MOST, ["Full"], most_forgetting, forgetting=True)
    add(evidence.CLAIM_BLOCKS_KEEP, [], blocks_keep, forgetting=True)
    add(evidence.CLAIM_LORA_MATCHES, ["Full"], match_full("LoRA"))
    add(evidence.CLAIM_BLOCKS_MATCH, ["Full"], match_full("block expansion"))
    add(evidence.CLAIM_LINEAR_LEAST, ["Linear"], linear_worst_learner)
    return out


def claims_with_intervals(frame: pd.DataFrame, runs: list[dict] | None, probe: str = KNN.name, k: int = 20) -> list[dict]:
    """`claims` on our records, each with a three-way verdict from its 95% interval where the records carry
    per-query correctness (`vitcf.book.evidence.claim_intervals`): "holds" (bool or None) becomes "verdict"
    (holds / does not hold / inconclusive, or "-"), the evidence gains the effect and its interval."""
    points = claims(frame, probe)
    tested = evidence.claim_intervals(runs, probe, k) if runs else [None] * len(points)
    out = []
    for point, found in zip(points, tested):
        if found is not None and found["verdict"] is not None and point["holds"] is not None:
            out.append({**point, "verdict": found["verdict"], "evidence": found["evidence"]})
        else:
            out.append({**point, "verdict": verdict(point["holds"]),
                        "evidence": point["evidence"] + ("" if not runs or point["holds"] is None
                                                         else " (no interval: these records carry no per-query correctness)")})
    return out


PAPER_VERDICT, OURS_KNN, OURS_HEAD = "paper (k-NN; it reports no linear head)", "ours, k-NN", "ours, linear head"
OURS_INSTANCE = "ours, instance retrieval"
NOT_A_PROBE = "n/a"  # a claim about the new domain alone: no probe of the pre-training domain enters


def verdict(holds) -> str:
    """A two-way test's outcome in words: "holds", "does not hold", or "-" when it could not be tested."""
    return "-" if holds is None else ("holds" if holds else "does not hold")


def claims_table(paper: pd.DataFrame, ours: pd.DataFrame | None, runs: list[dict] | None = None,
                 k: int = 20) -> pd.DataFrame:
    """Each claim: holds or not on the paper's numbers (k-NN, the only probe it reports) and on ours, by
    the k-NN probe, by the linear head and (where the records carry it) by the instance probe, with the
    evidence. Given the records (`runs`) with per-query correctness, our verdicts are three-way, from each
    claim's 95% interval (`claims_with_intervals`). A claim about the new domain alone does not depend on
    the probe: its other probes' cells say so ("n/a")."""
    theirs = claims(paper)
    missing = [{"holds": None, "verdict": "-", "evidence": "no records"}] * len(theirs)
    by_knn = claims_with_intervals(ours, runs, KNN.name, k) if ours is not None else missing
    by_head = claims_with_intervals(ours, runs, HEAD.name, k) if ours is not None else missing
    by_instance = claims_with_intervals(ours, runs, INSTANCE.name, k) if ours is not None else missing
    rows = []
    for p, o, h, i in zip(theirs, by_knn, by_head, by_instance):
        def cell(found):
            return (found["verdict"], found["evidence"]) if p["forgetting"] else (
                NOT_A_PROBE, "same as by the k-NN probe")
        head, instance = cell(h), cell(i)
        rows.append({"claim": p["claim"], PAPER_VERDICT: verdict(p["holds"]), "paper's numbers": p["evidence"],
                     OURS_KNN: o["verdict"], "our numbers, k-NN": o["evidence"],
                     OURS_HEAD: head[0], "our numbers, linear head": head[1],
                     OURS_INSTANCE: instance[0], "our numbers, instance retrieval": instance[1]})
    table = pd.DataFrame(rows).set_index("claim")
    if ours is None or not is_measured(ours, INSTANCE):  # older records have no instance probe: no empty columns
        table = table.drop(columns=[OURS_INSTANCE, "our numbers, instance retrieval"])
    return table


def agreement_note(paper: pd.DataFrame, ours: pd.DataFrame, runs: list[dict] | None = None, k: int = 20,
                   brief: bool = False) -> str:
    """Where our runs agree with the paper's claims and where they do not, by each probe (Markdown); an
    inconclusive verdict of ours is counted apart, neither as agreement nor as disagreement. `brief`:
    the counts by the k-NN probe only, in one sentence."""
    table = claims_table(paper, ours, runs, k)

    def differ(column: str) -> pd.DataFrame:
        return table[(table[PAPER_VERDICT] != table[column])
                     & ~table[column].isin(["-", NOT_A_PROBE, evidence.INCONCLUSIVE])]

    def listed(rows: pd.DataFrame, column: str, evidence: str) -> str:
        return "; ".join(f"*{claim}* ({row[PAPER_VERDICT]} in the paper, {row[column]} in ours: {row[evidence]})"
                         for claim, row in rows.iterrows())

    same = table[table[PAPER_VERDICT] == table[OURS_KNN]]
    open_ = table[table[OURS_KNN] == evidence.INCONCLUSIVE]
    counts = {v: int((table[OURS_KNN] == v).sum()) for v in (evidence.HOLDS, evidence.FAILS, evidence.INCONCLUSIVE)}
    text = (f"Of the paper's {len(table)} headline claims tested here, our runs agree on {len(same)} by "
            f"{KNN.words}, the one the paper used (ours: {counts[evidence.HOLDS]} hold, {counts[evidence.FAILS]} "
            f"{'does' if counts[evidence.FAILS] == 1 else 'do'} not hold, {counts[evidence.INCONCLUSIVE]} inconclusive)")
    if brief:
        return text + "."
    if not differ(OURS_KNN).empty:
        text += ". They disagree on: " + listed(differ(OURS_KNN), OURS_KNN, "our numbers, k-NN")
    if not open_.empty:
        text += (". Our records cannot decide: " + listed(open_, OURS_KNN, "our numbers, k-NN"))
    text += "."
    for probe, column in ((HEAD, OURS_HEAD), (INSTANCE, OURS_INSTANCE)):  # probes the paper did not use
        if column not in table:
            continue
        tested = table[~table[column].isin(["-", NOT_A_PROBE])]
        if tested.empty:
            continue
        agree = int((tested[column] == tested[PAPER_VERDICT]).sum())
        unsure = int((tested[column] == evidence.INCONCLUSIVE).sum())
        text += (f" The paper reports no {probe.adjective} probe; by ours, {agree} of its {len(tested)} claims about "
                 f"forgetting come out as in the paper" + (f" and {unsure} inconclusive" if unsure else ""))
        if not differ(column).empty:
            text += ", and these do not: " + listed(differ(column), column, f"our numbers, {probe.name}")
        text += "."
    return text


# --- the claims along the rate axis ------------------------------------------------------------------

def claims_by_rate(frame: pd.DataFrame, runs: list[dict] | None = None, k: int = 20) -> pd.DataFrame:
    """The paper's headline claims tested on the rate axis: at the paper's own rates (each family at its
    row's rate) and at each common rate, on each probe. Rows: claims; columns: (probe, rates). Given
    the records (`runs`) with per-query correctness, each verdict is three-way, from its 95% interval
    (`claims_with_intervals`): holds, does not hold, inconclusive; without, it compares the
    means. A claim about the new domain alone reads no probe: "n/a" under the other probes."""
    settings = {"the paper's rates": frame[frame["paper_rate"]]}
    settings.update({f"all at {lr:g}": frame[frame["lr"] == lr] for lr in sorted(frame["lr"].unique())})
    table = {}
    for probe in (p.name for p in probes_of(frame, with_baseline=False)):
        for name, rows in settings.items():
            chosen = set(rows["run"])
            tested = [r for r in runs if r["run"] in chosen] if runs else None
            found = claims_with_intervals(rows, tested, probe, k) if not rows.empty else []
            table[(probe, name)] = {c["claim"]: c["verdict"] if c["forgetting"] or probe == KNN.name
                                    else NOT_A_PROBE for c in found}
    return pd.DataFrame(table).rename_axis("claim")


def _where(held: list[str], failed: list[str], unsure: list[str]) -> str:
    """Where along the common rates a claim holds, in words."""
    total = len(held) + len(failed) + len(unsure)
    if len(held) == total:
        return "holds at every common rate"
    if len(failed) == total:
        return "holds at no common rate"
    if len(unsure) == total:
        return "is inconclusive at every common rate"
    text = (f"holds at {', '.join(held)}" + (f" but not at {', '.join(failed)}" if failed else "")) if held \
        else f"does not hold at {', '.join(failed)}" if failed else ""
    return text + (f" and is inconclusive at {', '.join(unsure)}" if unsure else "")


def _reason(paper: str, held: list[str], failed: list[str], unsure: list[str]) -> str:
    """What decides a claim along the common rates: the rate, the method, or neither can be told."""
    if held and failed:
        return "the rate decides it"
    if not held and not failed:
        return "these records cannot tell at matched rates"
    found = HOLDS if held else FAILS
    if found == paper:
        return "the method decides it" + (" wherever the records can tell" if unsure else ", whatever the rate")
    if paper in (HOLDS, FAILS):
        return "at the paper's rates the rates were speaking, not the methods"
    return "matched rates settle what the paper's rates leave open"


def _checks(table: pd.DataFrame):
    """Each (claim, probe) that `claims_by_rate`'s table tested at a common rate: (claim, what it reads,
    its verdict at the paper's rates, and the common rates where it holds, fails, is inconclusive)."""
    names = list(dict.fromkeys(probe for probe, _ in table.columns))
    for probe in names:
        part = table[probe]
        paper, matched = part["the paper's rates"], part.drop(columns="the paper's rates")
        for claim in part.index:
            def at(word: str) -> list[str]:
                return [c.removeprefix("all at ") for c in matched.columns if matched.loc[claim, c] == word]

            held, failed, unsure = at(HOLDS), at(FAILS), at(INCONCLUSIVE)
            if held or failed or unsure:
                about = f"{probe} probe" if table.loc[claim, (names[-1], "the paper's rates")] != NOT_A_PROBE \
                    else "the new domain alone"
                yield claim, about, paper[claim], held, failed, unsure


UNCHECKED = "*None of the paper's claims could be checked at a common rate on these records.*"


def rates_note(table: pd.DataFrame) -> str:
    """Which of the paper's claims survive matched rates and which were the rates speaking (Markdown);
    `table` is `claims_by_rate`'s."""
    lines = [f"- *{claim}* ({about}): {paper} at the paper's rates; {_where(held, failed, unsure)}: "
             f"{_reason(paper, held, failed, unsure)}."
             for claim, about, paper, held, failed, unsure in _checks(table)]
    return "\n".join(lines) if lines else UNCHECKED


def rates_headline(table: pd.DataFrame) -> str:
    """The rate axis in one sentence: of the claims checked on each probe, how many the method decides and
    how many the rate (Markdown); `table` is `claims_by_rate`'s."""
    reasons = [_reason(paper, held, failed, unsure) for _, _, paper, held, failed, unsure in _checks(table)]
    if not reasons:
        return UNCHECKED
    parts = [text.format(n=n) for start, text in _SHORT if (n := sum(r.startswith(start) for r in reasons))]
    listed = "; ".join(parts)
    return (f"**In short.** Of the {len(reasons)} checks of the paper's claims on this page (one claim on one probe, "
            f"at the paper's rates and at every common rate), {listed}. The section on matched rates gives each one.")


# `_reason`'s verdicts, as the headline counts them.
_SHORT = (("the method decides", "the method decides {n}"), ("the rate decides", "the rate decides {n}"),
          ("at the paper's rates", "in {n} the paper's mixed rates spoke, not the methods"),
          ("matched rates settle", "in {n} matched rates settle what the paper's rates left open"),
          ("these records cannot tell", "in {n} the records cannot tell"))
