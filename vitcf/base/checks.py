"""Argument checks: each error names the parameter, the bad value and what is allowed.

What a parameter allows is a small object (`IntRange`, `NumberRange`, `Choice`, `Pair`) that both
checks a value and says in words what it admits, so one statement of a range serves the check, its
error message and the command line's help. A config dataclass states each field's range once, as
field metadata (`checked`), and validates them all with `check_fields`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass


class Allowed:
    """What one parameter admits: `admits` tests a value, `describe` says it in words."""

    type: type  # what a command-line string is read as

    def admits(self, value) -> bool:
        raise NotImplementedError

    def describe(self, plural: bool = False) -> str:
        """E.g. 'an integer >= 1' (plural: 'integers >= 1')."""
        raise NotImplementedError

    def check(self, name: str, value) -> None:
        """Raise ValueError unless `value` is admitted, naming `name`, the value and what is allowed."""
        if not self.admits(value):
            raise ValueError(f"{name} must be {self.describe()}, got {value!r}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class IntRange(Allowed):
    """Integers from `low` up to `high` (None: no upper bound), both included."""

    low: int = 1
    high: int | None = None
    type = int

    def admits(self, value) -> bool:
        return _is_int(value) and self.low <= value and (self.high is None or value <= self.high)

    def describe(self, plural: bool = False) -> str:
        kind = "integers" if plural else "an integer"
        return f"{kind} >= {self.low}" if self.high is None else f"{kind} in [{self.low}, {self.high}]"


@dataclass(frozen=True)
class NumberRange(Allowed):
    """Finite numbers (ints or floats, not bools) from `low` to `high`; an open end excludes its bound."""

    low: float
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    type = float

    def admits(self, value) -> bool:
        if not _is_number(value) or not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def describe(self, plural: bool = False) -> str:
        if math.isinf(self.high):
            return f"{'finite numbers' if plural else 'a finite number'} {'>' if self.low_open else '>='} {self.low}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"{'numbers' if plural else 'a number'} in {left}{self.low}, {self.high}{right}"


@dataclass(frozen=True)
class Choice(Allowed):
    """One of a fixed set of strings."""

    choices: tuple[str, ...]
    type = str

    def admits(self, value) -> bool:
        return value in self.choices

    def describe(self, plural: bool = False) -> str:
        return f"{'among' if plural else 'one of'} {', '.join(self.choices)}"


@dataclass(frozen=True)
class Pair(Allowed):
    """A pair [first, last] (a tuple of two), each admitted by `item`."""

    item: Allowed
    type = tuple

    def admits(self, value) -> bool:
        return isinstance(value, tuple) and len(value) == 2 and all(self.item.admits(v) for v in value)

    def describe(self, plural: bool = False) -> str:
        return f"{'pairs' if plural else 'a pair'} [first, last] of {self.item.describe(plural=True)}"

    def check(self, name: str, value) -> None:
        if not (isinstance(value, tuple) and len(value) == 2):
            raise ValueError(f"{name} must be a pair [first, last], got {value!r}")
        for v in value:
            self.item.check(name, v)


def check_int(name: str, value, low: int = 1, high: int | None = None) -> None:
    """An integer in [low, high] (by default a positive one; None: no upper bound)."""
    IntRange(low, high).check(name, value)


def check_number(name: str, value, low: float, high: float = math.inf, *, low_open: bool = False,
                 high_open: bool = False) -> None:
    """A finite number between `low` and `high`; an open end excludes its bound."""
    NumberRange(low, high, low_open, high_open).check(name, value)


def check_each(name: str, values: Iterable, allowed: Allowed, *, nonempty: bool = False) -> None:
    """Every one of `values` admitted by `allowed` (with `nonempty`, at least one); the error lists the bad ones."""
    values = list(values)
    bad = [v for v in values if not allowed.admits(v)]
    if bad:
        raise ValueError(f"{name} must be {allowed.describe(plural=True)}, got {bad}")
    if nonempty and not values:
        raise ValueError(f"{name} must be one or more {allowed.describe(plural=True)}, got none")


def check_known(what: str, key, known: Collection) -> None:
    """`key` is one of `known` (a registry's names), else 'unknown WHAT KEY; allowed: ...'."""
    if key not in known:
        raise ValueError(f"unknown {what} {key!r}; allowed: {', '.join(map(str, known))}")


def checked(allowed: Allowed, *, default=dataclasses.MISSING, default_text: str | None = None):
    """A dataclass field stating what it allows, for `check_fields` and help texts, with its default
    (none given: a required field); `default_text` says in words what the default stands for."""
    return dataclasses.field(default=default, metadata={"allowed": allowed, "default_text": default_text})


def allowed_of(field: dataclasses.Field) -> Allowed | None:
    """What a `checked` field allows (None for a field declared without it)."""
    return field.metadata.get("allowed")


def default_text(field: dataclasses.Field) -> str:
    """A field's default in words: its `default_text`, else the default value itself."""
    return field.metadata.get("default_text") or str(field.default)


def check_fields(config, prefix: str) -> None:
    """Check every `checked` field of dataclass `config`, naming each as 'PREFIX: FIELD'; a None left at a
    None default stands for something else and passes."""
    for field in dataclasses.fields(config):
        allowed, value = allowed_of(field), getattr(config, field.name)
        if allowed is not None and not (value is None and field.default is None):
            allowed.check(f"{prefix}: {field.name}", value)
