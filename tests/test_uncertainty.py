"""vitcf.base.uncertainty: packed correctness, paired bootstrap intervals checked against known answers, Holm."""

import math

import numpy as np
import pytest

from vitcf.base import uncertainty as u

N = 4_000


def wrong_on(indices, n=N):
    correct = np.ones(n, dtype=bool)
    correct[list(indices)] = False
    return correct


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 2_000])
def test_packed_correctness_comes_back_bit_for_bit(n):
    correct = np.random.default_rng(n).random(n) < 0.7
    packed = u.pack(correct)
    assert packed["n"] == n and len(packed["bits"]) <= 4 * ((n + 7) // 8 + 2) // 3 + 4  # about n/6 characters
    assert np.array_equal(u.unpack(packed), correct)


def test_bad_correctness_is_refused_with_what_was_expected():
    with pytest.raises(ValueError, match="flat sequence of booleans"):
        u.pack(np.zeros((2, 2), dtype=bool))
    with pytest.raises(ValueError, match="flat sequence of booleans"):
        u.pack([0.5, 1.0])
    with pytest.raises(ValueError, match="cannot hold exactly 20 queries"):
        u.unpack({"n": 20, "bits": u.pack([True] * 8)["bits"]})
    with pytest.raises(ValueError, match="expected {'n': int, 'bits': str}"):
        u.unpack({"bits": "AA=="})


def test_a_certain_drop_has_a_point_interval():
    interval = u.drop_interval(np.ones(100, bool), [np.zeros(100, bool)])
    assert (interval.estimate, interval.low, interval.high) == (100.0, 100.0, 100.0)
    assert interval.verdict() == u.HOLDS and interval.p_value < 0.001 and interval.seeds == (1,)


def test_the_drop_interval_has_the_binomial_width_of_its_discordant_queries():
    interval = u.drop_interval(np.ones(N, bool), wrong_on(range(400)))  # 10% of the queries lost
    se = math.sqrt(0.1 * 0.9 / N) * 100  # 0.47 points
    assert interval.estimate == pytest.approx(10.0)
    assert (interval.high - interval.low) / 2 == pytest.approx(1.96 * se, rel=0.12)
    assert interval.low < 10.0 < interval.high and interval.verdict(boundary=9.0) == u.HOLDS
    assert interval.verdict(boundary=10.5) == u.INCONCLUSIVE and interval.verdict(boundary=12.0) == u.FAILS


def test_pairing_on_shared_queries_resolves_a_small_difference():
    """Both forget 10-11% of the same queries; they differ on 50 of 4,000: 1.25 points, SE 0.18 paired.
    Unpaired, the two 10% proportions alone would give an SE of 0.68 and an interval across 0."""
    first, second = wrong_on(range(450)), wrong_on(range(400))
    interval = u.difference_interval([first], [second])
    assert interval.estimate == pytest.approx(1.25)
    assert (interval.high - interval.low) / 2 == pytest.approx(1.96 * math.sqrt(50 / N * (1 - 50 / N) / N) * 100,
                                                               rel=0.15)
    assert interval.verdict() == u.HOLDS
    assert u.difference_interval([second], [first]).verdict() == u.FAILS  # the other way round
    assert u.difference_interval([first], [first]).verdict() == u.INCONCLUSIVE  # no difference at all


def test_seeds_that_disagree_widen_the_interval():
    seeds = [wrong_on(range(k)) for k in (200, 1_000, 1_800)]  # drops of 5, 25 and 45 points
    interval = u.drop_interval(np.ones(N, bool), seeds)
    assert interval.estimate == pytest.approx(25.0) and interval.seeds == (3,)
    assert interval.high - interval.low > 20  # the seeds' spread, not the queries', sets the width
    queries_only = u.drop_interval(np.ones(N, bool), seeds[1])
    assert queries_only.high - queries_only.low < 3


def test_the_same_records_give_the_same_interval_and_the_seed_is_stated():
    before, after = np.ones(500, bool), wrong_on(range(60), 500)
    assert u.drop_interval(before, after) == u.drop_interval(before, after)
    stated = u.drop_interval(before, after)
    assert (stated.resamples, stated.generator_seed, stated.level) == (u.RESAMPLES, u.SEED, 0.95)
    assert u.drop_interval(before, after, seed=3, resamples=500).generator_seed == 3
    with pytest.raises(ValueError, match="same queries"):
        u.difference_interval([before], [np.ones(400, bool)])


def test_holm_adjusts_step_down_in_the_input_order():
    assert u.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert u.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    with pytest.raises(ValueError, match="p-values in"):
        u.holm([0.2, 1.5])
