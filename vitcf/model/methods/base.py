"""What every fine-tuning method shares: the registry and the config base class.

A method is a frozen dataclass whose fields are its hyperparameters, each declared with
`vitcf.base.checks.checked` to state its default and range once. `__post_init__` validates them
against those ranges, so a bad value fails before any model is built (the command line reads the
same ranges for its help); `apply` prepares a model for training and leaves `requires_grad` set on
exactly the tensors that train.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from vitcf.base.checks import allowed_of, check_fields, check_known

METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Add method `cls` to `METHODS`; each of its hyperparameters must state its range (`checked`)."""
    unstated = [f.name for f in dataclasses.fields(cls) if allowed_of(f) is None]
    if unstated:
        raise TypeError(f"method {cls.name!r}: hyperparameters {', '.join(unstated)} state no range; "
                        f"declare them with vitcf.base.checks.checked")
    METHODS[cls.name] = cls
    return cls


@dataclass(frozen=True)
class Method:
    name: ClassVar[str]
    family: ClassVar[str]  # the paper's grouping: "standard", "LoRA", "block expansion"
    reversible: ClassVar[bool] = False  # can `revert` give back the untouched pre-trained backbone?

    def __post_init__(self):
        check_fields(self, self.name)

    def apply(self, model: nn.Module) -> nn.Module:
        """Prepare `model` (a backbone with a classifier) for training; it is modified in place."""
        raise NotImplementedError

    def revert(self, model: nn.Module) -> nn.Module:
        """Undo the method: return the backbone architecture with the pre-trained weights."""
        raise ValueError(
            f"method {self.name!r} changes the pre-trained weights in place; nothing can revert it "
            f"(reversible methods: {', '.join(n for n, m in METHODS.items() if m.reversible)})"
        )

    @property
    def hparams(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def label(self) -> str:
        """A short name for tables and plots, e.g. 'LoRA r=8'."""
        args = " ".join(f"{k}={v}" for k, v in self.hparams.items())
        return f"{self.name} {args}".strip()


def make_method(name: str, **hparams) -> Method:
    """The validated config of method `name`; unknown names or hyperparameters raise ValueError."""
    check_known("method", name, METHODS)
    cls = METHODS[name]
    fields = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(hparams) - set(fields))
    if unknown:
        allowed = ", ".join(fields) or "none"
        raise ValueError(f"method {name!r} has no hyperparameter {', '.join(unknown)}; allowed: {allowed}")
    return cls(**hparams)


def apply_method(model: nn.Module, method: str, **hparams) -> nn.Module:
    """Look `method` up, validate `hparams`, and return `model` ready to train."""
    return make_method(method, **hparams).apply(model)


# --- helpers on timm VisionTransformers ----------------------------------------------------------

def classifier(model: nn.Module) -> nn.Linear:
    """The model's linear classifier; a backbone built with num_classes=0 has none to train."""
    head = model.get_classifier()
    if not isinstance(head, nn.Linear):
        raise ValueError(
            "the model has no linear classifier to train (built with num_classes=0?); "
            "create the backbone with num_classes > 0"
        )
    return head


def train_only(model: nn.Module, *modules: nn.Module) -> nn.Module:
    """Freeze `model`, then unfreeze exactly the parameters of `modules`."""
    model.requires_grad_(False)
    for module in modules:
        module.requires_grad_(True)
    return model
