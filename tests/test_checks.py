"""Argument checks: what each range admits, how it reads, and errors naming the parameter, value and range."""

import dataclasses
import math
from dataclasses import dataclass

import pytest

from vitcf.base.checks import (
    Choice,
    IntRange,
    NumberRange,
    Pair,
    check_each,
    check_fields,
    check_int,
    check_known,
    check_number,
    checked,
    default_text,
)


@pytest.mark.parametrize(
    ("allowed", "good", "bad"),
    [
        (IntRange(1), [1, 7, 10**20], [0, -1, 2.0, True, "3", None]),
        (IntRange(0, 6), [0, 6], [-1, 7, 3.5]),
        (NumberRange(0.0, 1.0, high_open=True), [0, 0.0, 0.5], [1.0, -0.1, math.nan, True, "0.5"]),
        (NumberRange(0.0, low_open=True), [1e-9, 5, 1e300], [0, 0.0, -1, math.inf, math.nan]),
        (Choice(("qv", "qkv")), ["qv", "qkv"], ["QV", "all", None, ["qv"]]),
        (Pair(NumberRange(0.0, 1.0)), [(0.1, 0.4), (0, 1)], [(0.1,), (0.1, 0.2, 0.3), [0.1, 0.4], (0.1, 1.5)]),
    ],
)
def test_each_range_admits_exactly_its_values(allowed, good, bad):
    assert all(allowed.admits(v) for v in good)
    assert not any(allowed.admits(v) for v in bad)


@pytest.mark.parametrize(
    ("allowed", "single", "plural"),
    [
        (IntRange(1), "an integer >= 1", "integers >= 1"),
        (IntRange(0, 6), "an integer in [0, 6]", "integers in [0, 6]"),
        (NumberRange(0.0, 1.0, high_open=True), "a number in [0.0, 1.0)", "numbers in [0.0, 1.0)"),
        (NumberRange(0, 10, low_open=True), "a number in (0, 10]", "numbers in (0, 10]"),
        (NumberRange(0.0), "a finite number >= 0.0", "finite numbers >= 0.0"),
        (NumberRange(0.0, low_open=True), "a finite number > 0.0", "finite numbers > 0.0"),
        (Choice(("spread", "top")), "one of spread, top", "among spread, top"),
        (Pair(NumberRange(0.0, 1.0)), "a pair [first, last] of numbers in [0.0, 1.0]",
         "pairs [first, last] of numbers in [0.0, 1.0]"),
    ],
)
def test_a_range_says_what_it_admits(allowed, single, plural):
    assert allowed.describe() == single
    assert allowed.describe(plural=True) == plural


def test_errors_name_the_parameter_the_bad_value_and_the_range():
    with pytest.raises(ValueError, match=r"^seed must be an integer in \[0, 9\], got 10$"):
        check_int("seed", 10, 0, 9)
    with pytest.raises(ValueError, match=r"^chunk_size must be an integer >= 1, got 0$"):
        check_int("chunk_size", 0)
    with pytest.raises(ValueError, match=r"^lr must be a finite number > 0.0, got nan$"):
        check_number("lr", math.nan, 0.0, low_open=True)
    with pytest.raises(ValueError, match=r"^x: target must be one of qv, qkv, got 'all'$"):
        Choice(("qv", "qkv")).check("x: target", "all")
    with pytest.raises(ValueError, match=r"^scale must be a pair \[first, last\], got \(0.4,\)$"):
        Pair(NumberRange(0.0, 1.0)).check("scale", (0.4,))
    with pytest.raises(ValueError, match=r"^scale must be a number in \[0.0, 1.0\], got 1.5$"):
        Pair(NumberRange(0.0, 1.0)).check("scale", (0.4, 1.5))
    check_int("seed", 9, 0, 9)
    check_number("lr", 0.5, 0.0, 1.0)


def test_check_each_lists_the_bad_values_and_can_require_one():
    with pytest.raises(ValueError, match=r"^steps must be integers in \[0, 6\], got \[7, -1\]$"):
        check_each("steps", (0, 7, 3, -1), IntRange(0, 6))
    with pytest.raises(ValueError, match=r"^seeds must be one or more integers >= 0, got none$"):
        check_each("seeds", [], IntRange(0), nonempty=True)
    check_each("steps", (), IntRange(0, 6))
    check_each("seeds", iter([0, 1]), IntRange(0), nonempty=True)


def test_check_known_names_the_registry_entries():
    with pytest.raises(ValueError, match=r"^unknown grid 'bogus'; allowed: core, design$"):
        check_known("grid", "bogus", ("core", "design"))
    check_known("preset", "mini", {"mini": 1})


@dataclass(frozen=True)
class _Config:
    steps: int = checked(IntRange(1))
    rate: float | None = checked(NumberRange(0.0, low_open=True), default=None, default_text="steps")
    mode: str = checked(Choice(("a", "b")), default="a")
    free: int = -3  # states no range: not checked

    def __post_init__(self):
        check_fields(self, "config")


def test_check_fields_checks_every_stated_range_in_field_order():
    assert _Config(3).rate is None  # a None default stands for something else (here: steps)
    _Config(3, rate=0.5, mode="b")
    with pytest.raises(ValueError, match=r"^config: steps must be an integer >= 1, got 0$"):
        _Config(0, mode="c")
    with pytest.raises(ValueError, match=r"^config: rate must be a finite number > 0.0, got 0$"):
        _Config(1, rate=0)
    with pytest.raises(ValueError, match=r"^config: mode must be one of a, b, got 'c'$"):
        _Config(1, mode="c")
    with pytest.raises(TypeError):
        _Config()  # a checked field without a default is required
    fields = {f.name: f for f in dataclasses.fields(_Config)}
    assert default_text(fields["rate"]) == "steps" and default_text(fields["mode"]) == "a"
