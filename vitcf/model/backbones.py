"""Backbones: the ViTs the study fine-tunes, all timm `VisionTransformer`s, looked up by name.

`create_backbone` builds the architecture, then loads weights from one of three places: an explicit
local checkpoint, a file shipped in this package (the mini backbone), or the Hugging Face hub cache
(DINO ViT-B/16 through timm's hub repository). Without a network it fails at once with a message
that says how to supply the weights; it never returns a silently random model when asked for a
pre-trained one.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import torch

from vitcf.base.checks import check_int, check_known
from vitcf.model.checkpoints import load_into, sha256

if TYPE_CHECKING:
    from timm.models.vision_transformer import VisionTransformer

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
HUB_FILENAME = "model.safetensors"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsUnavailableError(RuntimeError):
    """Pre-trained weights were asked for but cannot be obtained here."""


class WeightsMismatchError(WeightsUnavailableError):
    """Shipped weights whose sha256 differs from the one their provenance card records."""


@dataclass(frozen=True)
class BackboneSpec:
    """One named backbone: the VisionTransformer keyword arguments and where its weights live."""

    arch: dict
    mean: tuple[float, ...]
    std: tuple[float, ...]
    description: str
    hub_id: str | None = None  # Hugging Face hub repository holding model.safetensors
    shipped: str | None = None  # file name under vitcf/weights/

    @property
    def img_size(self) -> int:
        return self.arch["img_size"]

    @property
    def in_chans(self) -> int:
        return self.arch.get("in_chans", 3)

    @property
    def depth(self) -> int:
        return self.arch["depth"]

    @property
    def has_weights(self) -> bool:
        return self.hub_id is not None or self.shipped is not None


# DINO's ViTs are plain pre-norm ViTs with a class token read after the final LayerNorm,
# qkv bias, no layer scale: timm's VisionTransformer defaults.
_VIT = dict(class_token=True, global_pool="token", qkv_bias=True, mlp_ratio=4.0)

BACKBONES: dict[str, BackboneSpec] = {
    "vit_base_patch16_224.dino": BackboneSpec(
        arch=dict(_VIT, img_size=224, patch_size=16, embed_dim=768, depth=12, num_heads=12),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        description="DINO ViT-B/16 pre-trained on ImageNet-1K (the paper's backbone)",
        hub_id="timm/vit_base_patch16_224.dino",
    ),
    # The CPU family: 12 blocks like ViT-B, so that top-3 and block expansion p=1..4 keep their
    # meaning, but narrow and on few tokens (28x28 grayscale in 7x7 patches: 16 tokens + CLS). On
    # two CPU cores 4x4 patches (49 tokens) cost 2.8x more per training step (measured, batch 64).
    # dynamic_img_size lets DINO pre-training feed small local crops (the position embedding is
    # resampled for them); at the native size the model computes exactly what a fixed-size one does.
    "mini": BackboneSpec(
        arch=dict(_VIT, img_size=28, patch_size=7, in_chans=1, embed_dim=64, depth=12, num_heads=4,
                  dynamic_img_size=True),
        mean=(0.5,),
        std=(0.5,),
        description="12-block ViT (width 64) for the offline mini study, DINO-pre-trained on Fashion-MNIST",
        shipped="mini.safetensors",
    ),
    "micro": BackboneSpec(
        arch=dict(_VIT, img_size=16, patch_size=4, in_chans=3, embed_dim=32, depth=12, num_heads=2,
                  dynamic_img_size=True),
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        description="12-block ViT (width 32) for tests; random weights only",
    ),
}


def get_spec(name: str) -> BackboneSpec:
    check_known("backbone", name, BACKBONES)
    return BACKBONES[name]


def create_backbone(
    name: str,
    pretrained: bool = False,
    num_classes: int = 0,
    checkpoint: str | os.PathLike | None = None,
) -> VisionTransformer:
    """Build backbone `name` with a fresh `num_classes`-way linear head (0: no head, CLS features out).

    Weights: `checkpoint` (a local file) if given; else, with `pretrained`, the backbone's shipped
    file or its hub weights; else random initialisation.
    """
    spec = get_spec(name)
    check_int("num_classes", num_classes, 0)
    from timm.models.vision_transformer import VisionTransformer  # here: timm's import costs seconds

    model = VisionTransformer(**spec.arch, num_classes=num_classes)
    if checkpoint is None and pretrained:
        checkpoint = pretrained_weights_path(name)
    if checkpoint is not None:
        # A pre-trained backbone never carries the new task's classifier.
        load_into(model, checkpoint, ignore=("head.",))
    return model


WEIGHTS_ENV = "VITCF_WEIGHTS_DIR"


def weights_dir() -> Path:
    """Where shipped backbone weights are read and written: VITCF_WEIGHTS_DIR, else vitcf/weights/."""
    return Path(os.environ[WEIGHTS_ENV]) if os.environ.get(WEIGHTS_ENV) else WEIGHTS_DIR


def pretrained_weights_path(name: str) -> Path:
    """The local file holding backbone `name`'s pre-trained weights, downloading it if possible."""
    spec = get_spec(name)
    if spec.shipped is not None:
        path = weights_dir() / spec.shipped
        if not path.is_file():
            raise WeightsUnavailableError(
                f"the pre-trained weights of backbone {name!r} are not in this checkout (expected {path}); "
                f"regenerate them with `vitcf pretrain --preset {name}` or pass checkpoint=PATH"
            )
        return verify_against_card(path)
    if spec.hub_id is not None:
        return _hub_weights(name, spec.hub_id)
    with_weights = [n for n, s in BACKBONES.items() if s.has_weights]
    raise WeightsUnavailableError(
        f"backbone {name!r} has no pre-trained weights; backbones with weights: {', '.join(with_weights)}"
    )


def verify_against_card(path: Path) -> Path:
    """Return `path` if its sha256 is the one its provenance card (`NAME.json` beside it) records."""
    card = path.with_suffix(".json")
    regenerate = f"regenerate both with `vitcf pretrain --preset {path.stem}`, or restore them with `git checkout`"
    try:
        expected = json.loads(card.read_text())["weights"]["sha256"]
    except FileNotFoundError:
        raise WeightsUnavailableError(f"the weights {path} have no provenance card {card} to check them against; "
                                      f"{regenerate}") from None
    except (ValueError, KeyError, TypeError) as err:
        raise WeightsUnavailableError(f"the provenance card {card} is unreadable or records no weights.sha256 "
                                      f"({type(err).__name__}: {err}); {regenerate}") from None
    actual = sha256(path)
    if actual != expected:
        raise WeightsMismatchError(f"the weights {path} (sha256 {actual}) are not the ones their card {card} "
                                   f"records (sha256 {expected}); {regenerate}")
    return path


def _hub_weights(name: str, repo_id: str) -> Path:
    """Return the cached hub file, or download it; fail fast and helpfully when offline."""
    import huggingface_hub
    from huggingface_hub import constants

    cached = huggingface_hub.try_to_load_from_cache(repo_id, HUB_FILENAME)
    if isinstance(cached, str):
        return Path(cached)
    how = (
        f"To supply them: pass checkpoint=PATH (CLI: --checkpoint PATH) with a local .safetensors or "
        f".pth state dict of {name} (e.g. DINO's released dino_vitbase16_pretrain.pth), or warm the hub "
        f"cache on a machine with internet (python -c \"import vitcf; vitcf.create_backbone('{name}', "
        f"pretrained=True)\") and copy its cache folder ({constants.HF_HUB_CACHE}) here."
    )
    if constants.HF_HUB_OFFLINE:
        reason = "HF_HUB_OFFLINE is set and the hub cache does not hold them"
    else:
        reason = _unreachable(constants.ENDPOINT)
    if reason is None:
        try:
            return Path(huggingface_hub.hf_hub_download(repo_id, HUB_FILENAME))
        except Exception as err:  # network, HTTP and disk errors from the hub client
            reason = (f"the download into {constants.HF_HUB_CACHE} failed (the hub keeps a partial file there and "
                      f"a re-run resumes it): {type(err).__name__}: {err}")
    raise WeightsUnavailableError(
        f"cannot obtain pre-trained weights for {name!r} from the Hugging Face hub ({repo_id}): {reason}. {how}"
    )


def _unreachable(endpoint: str, timeout: float = 3.0) -> str | None:
    """Why `endpoint` cannot be reached right now, or None if a TCP connection opens."""
    url = urlparse(endpoint)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as err:
        return f"{host}:{port} is unreachable ({err})"
    return None


def cls_features(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The CLS token after the final LayerNorm (what DINO's k-NN evaluation uses), shape (B, width)."""
    return model.forward_head(model.forward_features(images), pre_logits=True)
