"""What every fine-tuning method shares: the registry, the config base class and argument checks.

A method is a frozen dataclass whose fields are its hyperparameters. `__post_init__` validates
them, so a bad value fails before any model is built; `apply` prepares a model for training and
leaves `requires_grad` set on exactly the tensors that train.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from torch import nn

METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    METHODS[cls.name] = cls
    return cls


@dataclass(frozen=True)
class Method:
    name: ClassVar[str]
    family: ClassVar[str]  # the paper's grouping: "standard", "LoRA", "block expansion"
    reversible: ClassVar[bool] = False  # can `revert` give back the untouched pre-trained backbone?

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
    try:
        cls = METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; allowed: {', '.join(METHODS)}") from None
    fields = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(hparams) - set(fields))
    if unknown:
        allowed = ", ".join(fields) or "none"
        raise ValueError(f"method {name!r} has no hyperparameter {', '.join(unknown)}; allowed: {allowed}")
    return cls(**hparams)


def apply_method(model: nn.Module, method: str, **hparams) -> nn.Module:
    """Look `method` up, validate `hparams`, and return `model` ready to train."""
    return make_method(method, **hparams).apply(model)


# --- argument checks: each names the bad value and what is allowed --------------------------------

def check_int(method: str, name: str, value, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{method}: {name} must be an integer >= {minimum}, got {value!r}")


def check_number(method: str, name: str, value, low: float, high: float, high_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and low <= value and (value < high if high_open else value <= high)
    if not ok:
        bracket = ")" if high_open else "]"
        raise ValueError(f"{method}: {name} must be a number in [{low}, {high}{bracket}, got {value!r}")


def check_choice(method: str, name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{method}: {name}={value!r} is not allowed; allowed: {', '.join(map(str, choices))}")


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
