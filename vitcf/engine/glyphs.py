"""The glyph domain: characters rendered from installed typefaces, a many-class new domain split by typeface.

    find typefaces (Debian's font packages) -> keep those covering the alphabet, drop identical designs
    -> merge homoglyphs (characters drawn alike in most typefaces) into one class -> split the typeface
    families into train and test -> render each (typeface, character) with a seeded random scale,
    rotation and position -> uint8 tensors, cached under DATA_ROOT/vitcf-cache

The glyph domain is to the mini backbone (pre-trained on Fashion-MNIST) what CIFAR-100 is to DINO's
ImageNet: many classes, far from the pre-training domain. The test split holds typefaces never seen in
training, so a model has to learn the characters, not the fonts. Everything is deterministic for a given
set of font files; `provenance()` names the font packages and the sha256 of the generated images, which
every run records.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

FONT_PACKAGES = ("fonts-noto-core", "fonts-dejavu-core", "fonts-liberation2", "fonts-urw-base35",
                 "fonts-freefont-ttf", "fonts-texgyre")
FONT_DIRS_ENV = "VITCF_FONT_DIRS"  # os.pathsep-separated folders searched instead of the defaults
DEFAULT_FONT_DIRS = ("/usr/share/fonts", "/usr/share/texmf/fonts/opentype")
FONT_SUFFIXES = (".ttf", ".otf")

# The alphabet: digits, and the Latin, Greek and Cyrillic letters of both cases.
ALPHABET = "".join((
    "0123456789",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
    "".join(chr(c) for c in range(0x391, 0x3AA) if c != 0x3A2),  # Greek capitals (no U+03A2)
    "".join(chr(c) for c in range(0x3B1, 0x3CA) if c != 0x3C2),  # Greek small letters (no final sigma)
    "Ё" + "".join(chr(c) for c in range(0x410, 0x430)),  # Cyrillic capitals
    "ё" + "".join(chr(c) for c in range(0x430, 0x450)),  # Cyrillic small letters
))


@dataclass(frozen=True)
class GlyphConfig:
    """How the glyph domain is made; every field goes into a run's record."""

    size: int = 28  # the images' side in pixels
    render_size: int | None = None  # draw at this side, then resize to `size` (None: at `size`)
    supersample: int = 4  # drawn at `supersample` times the side, then area-averaged down
    scale: tuple[float, float] = (0.55, 0.95)  # the glyph's longer side as a fraction of the image
    rotation: float = 15.0  # degrees, uniform in +-rotation
    min_coverage: float = 0.9  # a typeface must draw this share of the alphabet
    homoglyph_distance: float = 0.03  # mean absolute difference (0..1) under which two characters look alike
    homoglyph_share: float = 0.5  # ... in at least this share of the typefaces drawing both
    test_share: float = 0.2  # at least this share of the typefaces is held out, whole lineages at a time
    train_renders: int = 2  # seeded renders of each (typeface, character) in the train split
    test_renders: int = 1
    seed: int = 0


@dataclass(frozen=True)
class Typeface:
    path: str
    family: str
    style: str

    @property
    def name(self) -> str:
        return f"{self.family} {self.style}".strip()


class FontsUnavailableError(RuntimeError):
    """No usable typeface was found: the glyph domain cannot be made."""


def font_dirs() -> tuple[Path, ...]:
    env = os.environ.get(FONT_DIRS_ENV)
    dirs = env.split(os.pathsep) if env else DEFAULT_FONT_DIRS
    return tuple(Path(d).expanduser() for d in dirs if d)


def _font_files(dirs: Sequence[Path]) -> list[Path]:
    files = {p.resolve() for d in dirs if d.is_dir() for p in d.rglob("*") if p.suffix.lower() in FONT_SUFFIXES}
    return sorted(files)


def _cmap_and_name(path: Path) -> tuple[set[int], str, str] | None:
    from fontTools.ttLib import TTFont, TTLibError

    try:
        with TTFont(path, lazy=True, fontNumber=0) as font:
            cmap = font.getBestCmap() or {}
            names = font["name"]
            family = names.getBestFamilyName() or path.stem
            style = names.getBestSubFamilyName() or ""
    except (TTLibError, KeyError, OSError, AssertionError):
        return None
    return set(cmap), str(family), str(style)


def find_typefaces(config: GlyphConfig = GlyphConfig(), dirs: Sequence[Path] | None = None) -> list[Typeface]:
    """The typefaces under `dirs` drawing at least `min_coverage` of the alphabet, sorted by path."""
    dirs = font_dirs() if dirs is None else tuple(dirs)
    found = []
    codes = [ord(c) for c in ALPHABET]
    for path in _font_files(dirs):
        info = _cmap_and_name(path)
        if info is None:
            continue
        cmap, family, style = info
        if sum(c in cmap for c in codes) >= config.min_coverage * len(codes):
            found.append(Typeface(str(path), family, style))
    if not found:
        raise FontsUnavailableError(
            f"no typeface drawing {config.min_coverage:.0%} of the glyph alphabet was found under "
            f"{', '.join(map(str, dirs))}. On Debian or Ubuntu: apt-get install {' '.join(FONT_PACKAGES)}; "
            f"elsewhere set {FONT_DIRS_ENV} to folders of .ttf/.otf files")
    return found


def _pil_font(path: str, px: int):
    from PIL import ImageFont

    return ImageFont.truetype(path, px)


def _draw(font, char: str, canvas: int, scale: float, angle: float, offset: tuple[float, float] | None):
    """`char` as a float array of side `canvas`: its ink scaled so its longer side is `scale * canvas`,
    rotated by `angle` degrees and placed at `offset` (fractions of the free room; None: centred).
    None when the typeface draws nothing for it."""
    from PIL import Image, ImageDraw

    big = Image.new("L", (4 * canvas, 4 * canvas), 0)
    ImageDraw.Draw(big).text((2 * canvas, 2 * canvas), char, font=font, fill=255, anchor="mm")
    box = big.getbbox()
    if box is None:
        return None
    ink = big.crop(box)
    if angle:
        ink = ink.rotate(angle, resample=Image.BICUBIC, expand=True)
        ink = ink.crop(ink.getbbox() or (0, 0, ink.width, ink.height))
    side = max(1, round(scale * canvas))
    ratio = side / max(ink.width, ink.height)
    ink = ink.resize((max(1, round(ink.width * ratio)), max(1, round(ink.height * ratio))), Image.LANCZOS)
    out = Image.new("L", (canvas, canvas), 0)
    room = (canvas - ink.width, canvas - ink.height)
    fx, fy = (0.5, 0.5) if offset is None else offset
    out.paste(ink, (round(fx * room[0]), round(fy * room[1])))
    return np.asarray(out, dtype=np.float32)


def _shrink(image: np.ndarray, factor: int) -> np.ndarray:
    side = image.shape[0] // factor
    return image.reshape(side, factor, side, factor).mean(axis=(1, 3))


def _canonical(typeface: Typeface, chars: str, side: int = 28) -> dict[str, np.ndarray]:
    """Each character of `chars` the typeface draws, centred at scale 0.8 and upright, values 0..1."""
    font = _pil_font(typeface.path, 4 * side * 2)
    out = {}
    for char in chars:
        drawn = _draw(font, char, 4 * side, 0.8, 0.0, None)
        if drawn is not None:
            out[char] = _shrink(drawn, 4) / 255.0
    return out


def _drop_identical(typefaces: list[Typeface], drawings: list[dict]) -> tuple[list[Typeface], list[dict]]:
    """Keep the first of typefaces whose drawings of the whole alphabet are the same bytes."""
    seen, kept, kept_drawings = set(), [], []
    for typeface, drawn in zip(typefaces, drawings):
        digest = hashlib.sha256(b"".join(np.round(drawn[c] * 255).astype(np.uint8).tobytes() if c in drawn else b"-"
                                         for c in ALPHABET)).hexdigest()
        if digest not in seen:
            seen.add(digest)
            kept.append(typeface)
            kept_drawings.append(drawn)
    return kept, kept_drawings


def homoglyph_classes(drawings: list[dict], config: GlyphConfig) -> list[str]:
    """The classes: groups of characters drawn alike (mean absolute difference under
    `homoglyph_distance`) in at least `homoglyph_share` of the typefaces drawing both, joined
    transitively. Each class is the string of its characters, in alphabet order."""
    parent = {c: c for c in ALPHABET}

    def root(c):
        while parent[c] != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    for i, a in enumerate(ALPHABET):
        for b in ALPHABET[i + 1:]:
            both = [d for d in drawings if a in d and b in d]
            if not both:
                continue
            alike = sum(float(np.abs(d[a] - d[b]).mean()) < config.homoglyph_distance for d in both)
            if alike >= config.homoglyph_share * len(both):
                parent[root(b)] = root(a)
    groups: dict[str, str] = {}
    for c in ALPHABET:
        groups[root(c)] = groups.get(root(c), "") + c
    return sorted(groups.values(), key=lambda group: ALPHABET.index(group[0]))


# Typeface families that are clones or siblings of one design: a split keeps each lineage on one side,
# so the test typefaces are new designs, not a metric-compatible copy of a training one. A family not
# listed is a lineage of its own.
LINEAGES = {
    "Times": ("Nimbus Roman", "FreeSerif", "Liberation Serif", "TeX Gyre Termes"),
    "Helvetica and Arial": ("Nimbus Sans", "Nimbus Sans Narrow", "FreeSans", "Liberation Sans",
                            "Liberation Sans Narrow", "TeX Gyre Heros"),
    "Courier": ("Nimbus Mono PS", "FreeMono", "Liberation Mono", "TeX Gyre Cursor"),
    "Bitstream Vera": ("DejaVu Sans", "DejaVu Sans Mono", "DejaVu Serif"),
    "Noto": ("Noto Sans", "Noto Sans Display", "Noto Serif", "Noto Serif Display"),
    "Century Schoolbook": ("C059", "TeX Gyre Schola"),
    "Palatino": ("P052", "TeX Gyre Pagella"),
    "Bookman": ("URW Bookman", "TeX Gyre Bonum"),
    "Avant Garde": ("URW Gothic", "TeX Gyre Adventor"),
    "Zapf Chancery": ("Z003", "TeX Gyre Chorus"),
}
_LINEAGE_OF = {family: lineage for lineage, families in LINEAGES.items() for family in families}


def lineage(typeface: Typeface) -> str:
    return _LINEAGE_OF.get(typeface.family, typeface.family)


def split_typefaces(typefaces: list[Typeface], config: GlyphConfig) -> tuple[list[Typeface], list[Typeface]]:
    """(train, test) typefaces: lineages in a seeded order are held out whole until they hold at least
    `test_share` of the typefaces."""
    lineages = sorted({lineage(t) for t in typefaces})
    random.Random(config.seed).shuffle(lineages)
    held: set[str] = set()
    for name in lineages[:-1]:  # at least one lineage trains
        if sum(lineage(t) in held for t in typefaces) >= config.test_share * len(typefaces):
            break
        held.add(name)
    return [t for t in typefaces if lineage(t) not in held], [t for t in typefaces if lineage(t) in held]


def _render_split(typefaces: list[Typeface], classes: list[str], renders: int, config: GlyphConfig,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    draw_side = config.render_size or config.size
    canvas = draw_side * config.supersample
    images, labels = [], []
    for t_index, typeface in enumerate(typefaces):
        font = _pil_font(typeface.path, canvas * 2)
        rng = np.random.default_rng([seed, t_index])
        for label, group in enumerate(classes):
            for char in group:
                for _ in range(renders):
                    scale = rng.uniform(*config.scale)
                    angle = rng.uniform(-config.rotation, config.rotation)
                    offset = (rng.uniform(), rng.uniform())
                    drawn = _draw(font, char, canvas, scale, angle, offset)
                    if drawn is None:
                        continue
                    image = _shrink(drawn, config.supersample)
                    if draw_side != config.size:
                        image = _resize(image, config.size)
                    images.append(np.clip(np.rint(image), 0, 255).astype(np.uint8))
                    labels.append(label)
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize, as the fine-tuning input pipeline upsamples (a low-resolution glyph stays blurred)."""
    tensor = torch.from_numpy(image)[None, None]
    return torch.nn.functional.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False,
                                           antialias=True)[0, 0].numpy()


def package_versions() -> dict[str, str | None]:
    """The installed version of each font package (None where it is not installed or dpkg is absent)."""
    if shutil.which("dpkg-query") is None:
        return {p: None for p in FONT_PACKAGES}
    out = {}
    for package in FONT_PACKAGES:
        done = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True)
        out[package] = done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None
    return out


@dataclass(frozen=True)
class GlyphDomain:
    config: GlyphConfig
    classes: tuple[str, ...]
    train_typefaces: tuple[Typeface, ...]
    test_typefaces: tuple[Typeface, ...]
    splits: dict  # split -> (images uint8 (N, 28, 28), labels int64 (N,))

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for split in ("train", "test"):
            images, labels = self.splits[split]
            digest.update(images.tobytes())
            digest.update(labels.tobytes())
        return digest.hexdigest()

    def provenance(self) -> dict:
        return {
            "config": asdict(self.config),
            "classes": list(self.classes),
            "typefaces": {"train": len(self.train_typefaces), "test": len(self.test_typefaces),
                          "test_lineages": sorted({lineage(t) for t in self.test_typefaces})},
            "images": {s: int(len(self.splits[s][1])) for s in ("train", "test")},
            "font_packages": package_versions(),
            "sha256": self.sha256(),
        }


def _fonts_key(typefaces: list[Typeface]) -> str:
    digest = hashlib.sha256()
    for t in typefaces:
        stat = Path(t.path).stat()
        digest.update(f"{t.path}|{stat.st_size}|{int(stat.st_mtime)}".encode())
    return digest.hexdigest()[:16]


def make_domain(config: GlyphConfig = GlyphConfig(), *, cache: Path | None = None) -> GlyphDomain:
    """Find, deduplicate, merge and split the typefaces and render both splits (cached by settings and fonts)."""
    typefaces = find_typefaces(config)
    key = hashlib.sha256(json.dumps([asdict(config), _fonts_key(typefaces)]).encode()).hexdigest()[:16]
    path = None if cache is None else cache / f"glyphs-{key}.pt"
    if path is not None and path.is_file():
        try:
            return _from_state(torch.load(path, weights_only=True), config)
        except Exception:  # unreadable: make it again below, and overwrite it
            pass
    drawings = [_canonical(t, ALPHABET) for t in typefaces]
    typefaces, drawings = _drop_identical(typefaces, drawings)
    classes = homoglyph_classes(drawings, config)
    train, test = split_typefaces(typefaces, config)
    if not test:
        raise FontsUnavailableError(
            f"the typefaces found ({len(typefaces)}, all of the {lineage(typefaces[0])!r} lineage) leave none for a "
            f"test split of unseen designs; install {' '.join(FONT_PACKAGES)} or add folders to {FONT_DIRS_ENV}")
    splits = {"train": _render_split(train, classes, config.train_renders, config, config.seed),
              "test": _render_split(test, classes, config.test_renders, config, config.seed + 1)}
    domain = GlyphDomain(config, tuple(classes), tuple(train), tuple(test), splits)
    if path is not None:
        from vitcf.base.io import atomic_path

        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save(_to_state(domain), tmp)
    return domain


def _to_state(domain: GlyphDomain) -> dict:
    return {
        "classes": list(domain.classes),
        "train_typefaces": [asdict(t) for t in domain.train_typefaces],
        "test_typefaces": [asdict(t) for t in domain.test_typefaces],
        **{f"{s}_{part}": torch.from_numpy(domain.splits[s][i]) for s in ("train", "test")
           for i, part in enumerate(("images", "labels"))},
    }


def _from_state(state: dict, config: GlyphConfig) -> GlyphDomain:
    return GlyphDomain(
        config, tuple(state["classes"]),
        tuple(Typeface(**t) for t in state["train_typefaces"]),
        tuple(Typeface(**t) for t in state["test_typefaces"]),
        {s: (state[f"{s}_images"].numpy(), state[f"{s}_labels"].numpy()) for s in ("train", "test")},
    )


@lru_cache(maxsize=4)
def cached_domain(config: GlyphConfig = GlyphConfig()) -> GlyphDomain:
    """`make_domain` with the on-disk cache under DATA_ROOT/vitcf-cache, kept in memory per process."""
    from vitcf.engine import sources

    return make_domain(config, cache=sources.DATA_ROOT / "vitcf-cache")
