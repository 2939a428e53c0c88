"""Representation drift: linear CKA per block between the pre-trained and the fine-tuned backbone."""

import pytest
import torch

from vitcf import create_backbone, make_method
from vitcf.engine.drift import drift, linear_cka, stream_positions
from vitcf.engine.study import run


def test_linear_cka_is_invariant_to_rotation_and_scale_and_detects_change():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 16, generator=g)
    rotation, _ = torch.linalg.qr(torch.randn(16, 16, generator=g))
    assert linear_cka(x, 3.0 * x @ rotation + 5.0) == pytest.approx(1.0, abs=1e-9)
    assert linear_cka(x, torch.randn(200, 16, generator=g)) < 0.3
    with pytest.raises(ValueError, match=r"same N, got \(200, 16\) and \(10, 16\)"):
        linear_cka(x, x[:10])


def test_stream_positions_skip_inserted_blocks():
    model = make_method("block_expansion", p=3).apply(create_backbone("micro", num_classes=2))
    inserted = make_method("block_expansion", p=3).inserted_positions(12)
    positions = stream_positions(model, inserted)
    assert len(positions) == 12 and positions[-1] == 14
    for i in inserted:  # the stream after a group's top block is read after its inserted copy
        assert i in positions and i - 1 not in positions


def _images(n=64):
    g = torch.Generator().manual_seed(1)
    return [(torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=g), torch.zeros(n, dtype=torch.long))]


@pytest.mark.parametrize(("method", "hparams"), [("lora", {"r": 4}), ("block_expansion", {"p": 2}), ("top_k", {"k": 3})])
def test_an_untrained_method_has_not_drifted(method, hparams):
    torch.manual_seed(0)
    start = create_backbone("micro", num_classes=2)
    config = make_method(method, **hparams)
    torch.manual_seed(0)
    tuned = config.apply(create_backbone("micro", num_classes=2))  # identity at initialisation
    inserted = config.inserted_positions(12) if method == "block_expansion" else ()
    result = drift(start, tuned, _images(), lambda x: x.float() / 255, inserted=inserted, device=torch.device("cpu"))
    assert result["images"] == 64 and len(result["cka_per_block"]) == 12
    assert result["cka_per_block"] == pytest.approx([1.0] * 12, abs=1e-6)


def test_runs_record_where_they_drifted(tmp_path):
    linear = run("smoke", "linear", {}, 0, results_dir=tmp_path, progress=False, forgetting_steps=())
    top = run("smoke", "top_k", {"k": 3}, 0, results_dir=tmp_path, progress=False, forgetting_steps=())
    assert linear["metrics"]["drift"]["cka_per_block"] == pytest.approx([1.0] * 12, abs=1e-6)  # frozen backbone
    cka = top["metrics"]["drift"]["cka_per_block"]
    assert cka[:9] == pytest.approx([1.0] * 9, abs=1e-9)  # the frozen prefix is untouched
    assert max(cka[9:]) < 1.0 - 1e-9 and top["metrics"]["drift"]["images"] == 100  # six smoke steps: a small change


def test_drift_chart_draws_from_records(tmp_path):
    import vl_convert as vlc

    from vitcf.book import curve_charts, curve_frames

    runs = [run("smoke", m, h, 0, results_dir=tmp_path, progress=False, forgetting_steps=())
            for m, h in (("linear", {}), ("block_expansion", {"p": 2}))]
    frame = curve_frames.drift_frame(runs)
    assert len(frame) == 24 and set(frame["block"]) == set(range(1, 13))
    svg = vlc.vegalite_to_svg(curve_charts.drift_chart(runs).to_dict())
    assert "Block exp. p=2" in svg and "After pre-trained block" in svg
    old = dict(runs[0], metrics={k: v for k, v in runs[0]["metrics"].items() if k != "drift"})
    with pytest.raises(ValueError, match="none of the 1 records measured representation drift"):
        curve_charts.drift_chart([old])
