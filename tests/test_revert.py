"""Removing a method's additions gives back the pre-trained backbone (vitcf.model.revert)."""

from vitcf.model.revert import RevertCheck, revert_checks


def test_removing_lora_and_added_blocks_restores_the_backbone_exactly():
    checks = revert_checks("micro")
    assert [c.label for c in checks] == ["LoRA r=8", "Block exp. p=2"]
    assert all(isinstance(c, RevertCheck) and c.tensors > 100 for c in checks)
    assert [c.max_abs_difference for c in checks] == [0.0, 0.0]  # bit for bit, after every trainable tensor moved
