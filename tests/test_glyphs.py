"""The glyph domain: typefaces found and deduplicated, homoglyphs merged, a split by design lineage,
seeded rendering, the cache, and a clear error without fonts."""

from pathlib import Path

import numpy as np
import pytest
import torch

from vitcf.engine import glyphs, sources
from vitcf.engine.glyphs import ALPHABET, GlyphConfig

FONTS = {
    "dejavu": ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf"),
    "liberation2": ("LiberationSans-Regular.ttf", "LiberationMono-Regular.ttf", "LiberationSerif-Regular.ttf"),
}
ROOT = Path("/usr/share/fonts/truetype")
SMALL = GlyphConfig(train_renders=1, test_renders=1, test_share=0.3)


@pytest.fixture
def font_dir(tmp_path, monkeypatch):
    """A folder of six typefaces from four lineages (Vera, Helvetica/Arial, Courier, Times), as symlinks."""
    folder = tmp_path / "fonts"
    folder.mkdir()
    for package, names in FONTS.items():
        for name in names:
            source = ROOT / package / name
            if not source.is_file():
                pytest.skip(f"{source} is not installed (apt-get install {' '.join(glyphs.FONT_PACKAGES)})")
            (folder / name).symlink_to(source)
    monkeypatch.setenv(glyphs.FONT_DIRS_ENV, str(folder))
    return folder


def test_the_alphabet_holds_digits_and_three_scripts_of_both_cases():
    assert len(ALPHABET) == len(set(ALPHABET)) == 10 + 52 + 48 + 66
    assert {"A", "Α", "А", "0", "ж", "ω"} <= set(ALPHABET)


def test_a_domain_is_split_by_lineage_rendered_deterministically_and_cached(font_dir, tmp_path):
    domain = glyphs.make_domain(SMALL, cache=tmp_path / "cache")
    train_lineages = {glyphs.lineage(t) for t in domain.train_typefaces}
    test_lineages = {glyphs.lineage(t) for t in domain.test_typefaces}
    assert train_lineages and test_lineages and not train_lineages & test_lineages
    assert len(domain.train_typefaces) + len(domain.test_typefaces) == 6
    # Latin A, Greek Alpha and Cyrillic A are one class; A and B are not.
    merged = next(group for group in domain.classes if "A" in group)
    assert "Α" in merged and "А" in merged and "B" not in merged
    assert sorted("".join(domain.classes)) == sorted(ALPHABET)  # every character in exactly one class
    for split in ("train", "test"):
        images, labels = domain.splits[split]
        assert images.dtype == np.uint8 and images.shape[1:] == (28, 28) and len(images) == len(labels)
        assert labels.min() >= 0 and labels.max() < len(domain.classes)
        assert images.max() == 255 and images.reshape(len(images), -1).max(1).min() > 0  # no empty drawing
    again = glyphs.make_domain(SMALL)  # no cache: drawn again from the same fonts and seeds
    assert again.sha256() == domain.sha256()
    cached = glyphs.make_domain(SMALL, cache=tmp_path / "cache")
    assert cached.sha256() == domain.sha256() and cached.classes == domain.classes
    assert len(list((tmp_path / "cache").glob("glyphs-*.pt"))) == 1
    other = glyphs.make_domain(GlyphConfig(train_renders=1, test_renders=1, test_share=0.3, seed=1))
    assert other.sha256() != domain.sha256()
    record = domain.provenance()
    assert record["sha256"] == domain.sha256() and record["images"]["test"] == len(domain.splits["test"][1])
    assert set(record["font_packages"]) == set(glyphs.FONT_PACKAGES)


def test_a_low_resolution_rendering_is_upsampled_to_the_same_size_and_blurrier(font_dir):
    sharp = glyphs.make_domain(SMALL)
    blurred = glyphs.make_domain(GlyphConfig(train_renders=1, test_renders=1, test_share=0.3, render_size=8))
    assert blurred.splits["train"][0].shape == sharp.splits["train"][0].shape
    edges = [np.abs(np.diff(d.splits["train"][0].astype(float), axis=2)).mean() for d in (sharp, blurred)]
    assert edges[1] < edges[0]


def test_the_dataset_loader_serves_the_glyph_domain(font_dir, monkeypatch, tmp_path):
    monkeypatch.setattr(sources, "DATA_ROOT", tmp_path)
    glyphs.cached_domain.cache_clear()
    monkeypatch.setattr(glyphs, "cached_domain", lambda config=SMALL: glyphs.make_domain(config))
    train = sources.load_dataset("glyphs", "train")
    assert train.images.dtype == torch.uint8 and train.images.shape[1:] == (1, 28, 28)
    assert train.num_classes == len(glyphs.make_domain(SMALL).classes) < len(ALPHABET)


def test_without_fonts_the_error_names_the_packages_and_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(glyphs.FONT_DIRS_ENV, str(tmp_path))
    with pytest.raises(glyphs.FontsUnavailableError, match="fonts-noto-core.*VITCF_FONT_DIRS"):
        glyphs.find_typefaces()
    glyphs.cached_domain.cache_clear()
    monkeypatch.setattr(sources, "DATA_ROOT", tmp_path)
    with pytest.raises(sources.DatasetUnavailableError, match="VITCF_FONT_DIRS"):
        sources.load_dataset("glyphs", "test")
    glyphs.cached_domain.cache_clear()


def test_typefaces_of_one_lineage_leave_no_test_split_and_say_so(tmp_path, monkeypatch):
    source = ROOT / "dejavu" / "DejaVuSans.ttf"
    if not source.is_file():
        pytest.skip(f"{source} is not installed")
    (tmp_path / "DejaVuSans.ttf").symlink_to(source)
    monkeypatch.setenv(glyphs.FONT_DIRS_ENV, str(tmp_path))
    with pytest.raises(glyphs.FontsUnavailableError, match="Bitstream Vera.*leave none for a test split"):
        glyphs.make_domain(SMALL)
