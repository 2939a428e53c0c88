"""vitcf: fine-tuning self-supervised ViTs with and without catastrophic forgetting."""

from .backbones import BACKBONES, WeightsUnavailableError, cls_features, create_backbone
from .checkpoints import CheckpointError
from .methods import METHODS, apply_method, make_method
from .params import count_trainable

__all__ = [
    "BACKBONES",
    "METHODS",
    "CheckpointError",
    "WeightsUnavailableError",
    "apply_method",
    "cls_features",
    "count_trainable",
    "create_backbone",
    "make_method",
]
