"""Reversibility: LoRA and block expansion scored adapted, merged and removed, on both domains."""

import pytest

from vitcf.analyses import reversibility
from vitcf.study import run


@pytest.mark.parametrize(("method", "hparams", "states"), [
    ("lora", {"r": 8}, {"adapted", "merged", "removed"}),
    ("block_expansion", {"p": 2}, {"adapted", "removed"}),
])
def test_removing_what_was_learnt_gives_back_the_baseline(tmp_path, method, hparams, states):
    record = reversibility("smoke", method, hparams, seed=0, results_dir=tmp_path, progress=False)
    assert set(record["states"]) == states
    assert (tmp_path / "analyses" / f"reversibility_{record['run']}.json").is_file()
    adapted, removed = record["states"]["adapted"], record["states"]["removed"]
    # removed: the pre-trained backbone bit for bit, so the probe scores exactly the baseline
    assert removed["knn"] == record["baseline"]["knn"]
    assert removed["linear_head"] == record["baseline"]["linear_head"]
    # adapted: exactly what the study's own run of the same configuration and seed records
    plain = run("smoke", method, hparams, seed=0, results_dir=tmp_path / "plain", progress=False, forgetting_steps=())
    assert adapted["knn"] == {str(k): v for k, v in plain["metrics"]["knn"].items()}
    assert adapted["new_domain_accuracy"] == plain["metrics"]["new_domain_accuracy"]
    if "merged" in states:  # the same function as one plain ViT, up to float rounding
        assert record["states"]["merged"]["new_domain_accuracy"] == pytest.approx(adapted["new_domain_accuracy"], abs=2)
    again = reversibility("smoke", method, hparams, seed=0, results_dir=tmp_path, progress=False)
    assert again["skipped"] and again["states"] == record["states"]


def test_methods_that_overwrite_weights_are_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="method 'full' changes pre-trained weights in place .* reversible methods: "
                                         "lora, block_expansion"):
        reversibility("smoke", "full", {}, results_dir=tmp_path, progress=False)
    assert not tmp_path.joinpath("analyses").exists() and not any(tmp_path.iterdir())
