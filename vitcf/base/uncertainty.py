"""How sure a number is: per-query correctness packed for records, paired bootstrap intervals, Holm, verdicts.

A probe's accuracy is a mean over its queries, and every configuration is probed on the *same* queries,
so a drop (before - after) and a difference between two configurations' drops are paired
comparisons: each bootstrap resample draws one set of query weights and applies it to every
measurement it compares. Seeds are the second source of variation: a configuration's drop is the
mean over its seeds, and each resample also draws that configuration's seeds with replacement (a
two-stage bootstrap: seeds, then the shared queries). With one seed the interval covers the queries
alone, and says so (`Interval.seeds`).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 2_000  # bootstrap resamples of every interval
SEED = 0  # the bootstrap's generator seed: the same records always give the same intervals
LEVEL = 0.95
_CHUNK = 250  # resamples drawn at a time (a 10,000-query probe keeps memory at 20 MB)

HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"


def pack(correct: Sequence[bool] | np.ndarray) -> dict:
    """Per-query correctness as a record stores it: {"n": queries, "bits": base64 of the packed bits}."""
    array = np.asarray(correct)
    if array.ndim != 1 or not (array.dtype == bool or np.isin(array, (0, 1)).all()):
        raise ValueError(f"pack: expected a flat sequence of booleans, got shape {array.shape} and dtype {array.dtype}")
    return {"n": int(array.size), "bits": base64.b64encode(np.packbits(array.astype(bool))).decode("ascii")}


def unpack(packed: dict) -> np.ndarray:
    """The boolean array `pack` stored."""
    try:
        n, raw = int(packed["n"]), base64.b64decode(packed["bits"], validate=True)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"unpack: not a packed correctness entry ({error}); expected {{'n': int, 'bits': str}}") from None
    if len(raw) != (n + 7) // 8:
        raise ValueError(f"unpack: {len(raw)} bytes cannot hold exactly {n} queries")
    return np.unpackbits(np.frombuffer(raw, dtype=np.uint8))[:n].astype(bool)


@dataclass(frozen=True)
class Interval:
    """A point estimate (points: percentage points) and its bootstrap interval."""

    estimate: float
    low: float
    high: float
    level: float
    resamples: int
    generator_seed: int  # the bootstrap's own seed
    seeds: tuple[int, ...]  # seeds per compared configuration (1: the queries are the only variation)
    p_value: float  # two-sided bootstrap p-value of "the true value is 0"

    def verdict(self, boundary: float = 0.0) -> str:
        """'holds' when the whole interval lies above `boundary`, 'does not hold' when it lies below,
        'inconclusive' when it crosses it."""
        if self.low > boundary:
            return HOLDS
        if self.high < boundary:
            return FAILS
        return INCONCLUSIVE

    def __str__(self) -> str:
        return bracket(self.estimate, self.low, self.high)


def bracket(estimate: float, low: float, high: float) -> str:
    """"estimate [low, high]" in points, two decimals, never "-0.00"."""
    def points(value: float) -> str:
        return f"{round(value, 2) + 0.0:.2f}"

    return f"{points(estimate)} [{points(low)}, {points(high)}]"


def _as_matrix(runs) -> np.ndarray:
    """Seeds x queries booleans from one array or a sequence of them (one per seed)."""
    matrix = np.atleast_2d(np.asarray(runs, dtype=bool))
    if matrix.ndim != 2 or matrix.shape[0] == 0:
        raise ValueError(f"expected one correctness array per seed, got shape {np.asarray(runs).shape}")
    return matrix


def _resampled_means(matrices: list[np.ndarray], resamples: int, seed: int) -> np.ndarray:
    """(resamples, len(matrices)): each matrix's mean accuracy (%) over seeds drawn with replacement, the
    queries weighted by one multinomial draw per resample shared by all matrices (the pairing)."""
    n = matrices[0].shape[1]
    if any(m.shape[1] != n for m in matrices):
        raise ValueError(f"paired measurements need the same queries; got {[m.shape[1] for m in matrices]} queries")
    rng = np.random.default_rng(seed)
    out = np.empty((resamples, len(matrices)))
    for start in range(0, resamples, _CHUNK):
        size = min(_CHUNK, resamples - start)
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=size).T  # queries x resamples
        for column, matrix in enumerate(matrices):
            per_seed = matrix.astype(np.float64) @ weights * (100.0 / n)  # seeds x resamples
            picks = rng.integers(0, matrix.shape[0], size=(matrix.shape[0], size))
            out[start:start + size, column] = np.take_along_axis(per_seed, picks, axis=0).mean(axis=0)
    return out


def _interval(point: float, draws: np.ndarray, level: float, resamples: int, seed: int,
              seeds: tuple[int, ...]) -> Interval:
    tail = (1 - level) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    p = min(1.0, 2 * min((draws <= 0).mean(), (draws >= 0).mean()) + 1 / (resamples + 1))
    return Interval(float(point), float(low), float(high), level, resamples, seed, seeds, float(p))


class Paired:
    """Every configuration's accuracy under one shared set of bootstrap resamples (`_resampled_means`), so
    that any difference between two of them is a paired comparison and many differences cost one bootstrap.
    `matrices` maps a name to one correctness array per seed, all on the same queries."""

    def __init__(self, matrices: dict, *, resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL):
        self.names = list(matrices)
        self.matrices = [_as_matrix(matrices[name]) for name in self.names]
        self.resamples, self.seed, self.level = resamples, seed, level
        self.means = _resampled_means(self.matrices, resamples, seed)

    def _column(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"no correctness for {name!r}; have: {', '.join(self.names)}") from None

    def accuracy(self, name: str) -> Interval:
        """The accuracy (%) of `name`, mean over its seeds, with its interval (queries, then seeds)."""
        i = self._column(name)
        matrix = self.matrices[i]
        return _interval(matrix.mean(axis=1).mean() * 100, self.means[:, i], self.level, self.resamples, self.seed,
                         (matrix.shape[0],))

    def difference(self, first: str, second: str) -> Interval:
        """How much more `first` forgets than `second`: the accuracy of `second` minus that of `first` (points)."""
        i, j = self._column(first), self._column(second)
        a, b = self.matrices[i], self.matrices[j]
        point = b.mean(axis=1).mean() * 100 - a.mean(axis=1).mean() * 100
        return _interval(point, self.means[:, j] - self.means[:, i], self.level, self.resamples, self.seed,
                         (a.shape[0], b.shape[0]))


def drop_interval(before, after, *, resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL) -> Interval:
    """The drop (points) from `before` (the pre-trained backbone's correctness) to `after` (one array
    per seed of the fine-tuned configuration), with its paired bootstrap interval."""
    paired = Paired({"before": before, "after": after}, resamples=resamples, seed=seed, level=level)
    found = paired.difference("after", "before")
    return Interval(found.estimate, found.low, found.high, level, resamples, seed, found.seeds[:1], found.p_value)


def difference_interval(first, second, *, resamples: int = RESAMPLES, seed: int = SEED,
                        level: float = LEVEL) -> Interval:
    """How much more `first` forgets than `second` (points; both drops are from the same backbone, so
    this is the accuracy of `second` minus that of `first`), each given as one correctness array per
    seed, on the same queries."""
    return Paired({"first": first, "second": second}, resamples=resamples, seed=seed,
                  level=level).difference("first", "second")


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error), in the input's order."""
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1 or ((p < 0) | (p > 1)).any():
        raise ValueError(f"holm: expected p-values in [0, 1], got {p_values!r}")
    order = np.argsort(p)
    adjusted = np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order]).clip(max=1.0)
    out = np.empty_like(adjusted)
    out[order] = adjusted
    return out.tolist()
