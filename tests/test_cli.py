"""The command line's method options: read from the methods' config fields, with their ranges and defaults."""

import dataclasses

import pytest

from vitcf.engine.cli import main
from vitcf.model.methods import METHODS


def run_help(capsys) -> str:
    """`vitcf run --help`, its whitespace folded (argparse wraps lines to the terminal)."""
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--help"])
    assert exit_.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_run_help_gives_every_hyperparameter_its_methods_range_and_default(capsys):
    text = run_help(capsys)
    for expected in ["--r R lora: an integer >= 1 (default 8)",
                     "--alpha ALPHA lora: a finite number > 0.0 (default r)",
                     "--dropout DROPOUT lora: a number in [0.0, 1.0) (default 0.0)",
                     "--target TARGET lora: one of qv, qkv, all (default qv)",
                     "--k K top_k: an integer >= 1 (default 3)",
                     "--block BLOCK surgical: an integer >= 0 (default 0)",
                     "--blocks BLOCKS reinit: an integer >= 1 (default 12)",
                     "--p P block_expansion: an integer >= 1 (default 1)",
                     "--placement PLACEMENT block_expansion: one of spread, top (default spread)"]:
        assert expected in text
    for name, cls in METHODS.items():  # every registered method, with the options it takes
        assert name in text
        for field in dataclasses.fields(cls):
            assert f"--{field.name} {field.name.upper()} " in text
            assert f"{name}: {field.metadata['allowed'].describe()} (default " in text
    assert "block_expansion (--p, --placement)" in text and "reinit (--blocks, the positive control)" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--method", "lora", "--r", "0"], "lora: r must be an integer >= 1, got 0"),
     (["--method", "lora", "--alpha", "nan"], "lora: alpha must be a finite number > 0.0, got nan"),
     (["--method", "lora", "--dropout", "1"], "lora: dropout must be a number in [0.0, 1.0), got 1.0"),
     (["--method", "lora", "--target", "qkvo"], "lora: target must be one of qv, qkv, all, got 'qkvo'"),
     (["--method", "top_k", "--k", "-2"], "top_k: k must be an integer >= 1, got -2"),
     (["--method", "block_expansion", "--placement", "middle"],
      "block_expansion: placement must be one of spread, top, got 'middle'")],
)
def test_a_hyperparameter_out_of_range_exits_naming_it_and_writes_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "results"
    assert main(["run", "--preset", "smoke", *argv, "--results-dir", str(out), "--quiet"]) == 2
    assert capsys.readouterr().err == f"vitcf run: error: {message}\n"
    assert not out.exists()
