"""Parameter accounting against the paper, derived independently from the ViT-B/16 architecture."""

import json
import subprocess
import sys

import pytest

from vitcf.engine.cli import main
from vitcf.base.paper import PAPER_ROWS
from vitcf.model.params import parse_count, paper_table, summary_count

D, CLASSES, DEPTH = 768, 100, 12
BLOCK = 12 * D * D + 13 * D  # 7,087,872
HEAD = D * CLASSES + CLASSES  # 76,900
BACKBONE = (3 * 16 * 16 * D + D) + 197 * D + D + DEPTH * BLOCK + 2 * D  # patch conv, pos, cls, blocks, norm


def expected_trainable(method, hparams):
    if method == "full":
        return BACKBONE + HEAD
    if method == "top_k":
        return hparams["k"] * BLOCK + HEAD
    if method == "linear":
        return HEAD
    if method == "lora":  # A (r x d) and B (d x r) on q and v of every block
        return DEPTH * 2 * hparams["r"] * (D + D) + HEAD
    if method == "block_expansion":
        return hparams["p"] * BLOCK + HEAD
    raise AssertionError(method)


@pytest.fixture(scope="module")
def table():
    return paper_table()


@pytest.mark.parametrize(
    ("n", "text"),
    [(85_875_556, "85.9 M"), (448_712, "448 K"), (743_624, "743 K"), (76_900, "76.9 K"),
     (999, "999"), (1_000, "1.0 K"), (99_950, "100.0 K"), (100_000, "100 K"), (0, "0")],
)
def test_summary_count_format(n, text):
    assert summary_count(n) == text


def test_parse_count():
    assert parse_count("85.9 M") == 85_900_000 and parse_count("301 K") == 301_000
    with pytest.raises(ValueError, match="not a parameter count"):
        parse_count("lots")


def test_every_paper_row_counted_exactly(table):
    assert BACKBONE == 85_798_656  # timm's and DINO's ViT-B/16 backbone size
    assert [(r["method"], {k: r["hparams"][k] for k in ref.hparams}) for r, ref in zip(table, PAPER_ROWS)] == [
        (ref.method, ref.hparams) for ref in PAPER_ROWS
    ]
    for row, ref in zip(table, PAPER_ROWS):
        assert row["trainable"] == expected_trainable(ref.method, ref.hparams), row["label"]


def test_every_difference_is_explained(table):
    for row, ref in zip(table, PAPER_ROWS):
        assert row["explained"], row["note"]
        counted = row["trainable"] + (ref.head_copies - 1) * HEAD
        assert summary_count(counted) == ref.params_text
    # The only difference: the LoRA rows count one extra classifier, and nothing else would do.
    for row in table:
        if row["method"] == "lora":
            assert summary_count(row["trainable"]) != row["reported_text"]
            assert "second classifier (76,900)" in row["note"]


def test_composition_names_the_parts(table):
    by_label = {r["label"]: r["composition"] for r in table}
    assert by_label["Top-3"] == "3 x block (7,087,872) + classifier (76,900)"
    assert by_label["LoRA r=8"] == "24 x LoRA adapter (12,288) + classifier (76,900)"
    assert by_label["Block exp. p=1"] == "block (7,087,872) + classifier (76,900)"


def test_cli_json_has_the_documented_keys():
    out = subprocess.run(
        [sys.executable, "-m", "vitcf.engine.cli", "params", "--format", "json"], capture_output=True, text=True, check=True
    ).stdout
    rows = json.loads(out)
    assert len(rows) == len(PAPER_ROWS)
    for row in rows:
        assert {"method", "hparams", "trainable", "reported"} <= row.keys()
        assert isinstance(row["trainable"], int) and isinstance(row["reported"], int)


def test_cli_table(capsys):
    assert main(["params"]) == 0
    out = capsys.readouterr().out
    assert "LoRA r=16" in out and "666,724" in out and "743 K" in out


def test_cli_rejects_bad_format(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["params", "--format", "yaml"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'yaml'" in capsys.readouterr().err
