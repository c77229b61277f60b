"""The narrowing rule between stages: numeric spans widened by a margin, log space, ints, steps, categoricals, top-k."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from rna_hpc.hpo.narrowing import narrow_space, pareto_front, select_top


def test_linear_float_span_widened_by_margin_of_parent_width() -> None:
    parent = {"x": FloatDistribution(0.0, 10.0)}
    out = narrow_space(parent, [{"x": 4.0}, {"x": 6.0}], margin=0.1)
    assert out["x"].low == pytest.approx(3.0) and out["x"].high == pytest.approx(7.0)
    assert out["x"].log is False and out["x"].step is None


def test_margin_zero_is_exactly_the_top_k_span() -> None:
    out = narrow_space({"x": FloatDistribution(-1.0, 1.0)}, [{"x": -0.2}, {"x": 0.5}, {"x": 0.1}], margin=0.0)
    assert (out["x"].low, out["x"].high) == (pytest.approx(-0.2), pytest.approx(0.5))


def test_identical_top_values_still_leave_a_range() -> None:
    out = narrow_space({"x": FloatDistribution(0.0, 1.0)}, [{"x": 0.5}, {"x": 0.5}], margin=0.1)
    assert out["x"].low == pytest.approx(0.4) and out["x"].high == pytest.approx(0.6)


def test_clipped_to_the_original_bounds_not_only_the_parent() -> None:
    original = {"x": FloatDistribution(0.0, 10.0)}
    parent = {"x": FloatDistribution(0.0, 2.0)}
    out = narrow_space(parent, [{"x": 0.1}, {"x": 1.9}], margin=0.5, original=original)
    assert out["x"].low == 0.0  # 0.1 - 0.5 * 2 clipped at the original low
    assert out["x"].high == pytest.approx(2.9)  # 1.9 + 1.0: may leave the parent, never the original


def test_log_params_narrow_in_log_space() -> None:
    parent = {"lr": FloatDistribution(1e-4, 1e-2, log=True)}  # two decades wide
    out = narrow_space(parent, [{"lr": 1e-3}], margin=0.25)
    assert out["lr"].log is True
    assert math.log10(out["lr"].low) == pytest.approx(-3.5)
    assert math.log10(out["lr"].high) == pytest.approx(-2.5)


def test_log_params_clip_in_their_own_bounds() -> None:
    parent = {"lr": FloatDistribution(1e-4, 1e-2, log=True)}
    out = narrow_space(parent, [{"lr": 1.2e-4}, {"lr": 9e-3}], margin=0.5)
    assert (out["lr"].low, out["lr"].high) == (1e-4, 1e-2)


def test_ints_stay_ints_rounded_outwards() -> None:
    parent = {"n": IntDistribution(1, 100)}
    out = narrow_space(parent, [{"n": 40}, {"n": 50}], margin=0.05)  # 40 - 4.95 .. 50 + 4.95
    assert isinstance(out["n"], IntDistribution)
    assert (out["n"].low, out["n"].high) == (35, 55)


def test_stepped_ints_stay_on_their_grid() -> None:
    parent = {"k": IntDistribution(1, 9, step=2)}
    out = narrow_space(parent, [{"k": 5}], margin=0.1)  # 5 -+ 0.8 -> snapped outwards to 3..7
    assert (out["k"].low, out["k"].high, out["k"].step) == (3, 7, 2)
    assert (out["k"].high - out["k"].low) % 2 == 0


def test_stepped_floats_stay_on_their_grid() -> None:
    parent = {"w": FloatDistribution(0.0, 1.0, step=0.25)}
    out = narrow_space(parent, [{"w": 0.5}], margin=0.1)
    assert (out["w"].low, out["w"].high, out["w"].step) == (0.25, 0.75, 0.25)


def test_log_ints() -> None:
    parent = {"r": IntDistribution(2, 64, log=True)}
    out = narrow_space(parent, [{"r": 8}, {"r": 16}], margin=0.0)
    assert isinstance(out["r"], IntDistribution) and out["r"].log
    assert (out["r"].low, out["r"].high) == (8, 16)


def test_categoricals_keep_the_choices_of_the_top_k_in_original_order() -> None:
    parent = {"model": CategoricalDistribution(["tiny", "base", "large"]), "flag": CategoricalDistribution([1, True])}
    out = narrow_space(parent, [{"model": "large", "flag": 1}, {"model": "tiny", "flag": 1}], margin=0.5)
    assert out["model"].choices == ("tiny", "large")
    assert out["flag"].choices == (1,)  # True == 1 in Python, but it is another choice


def test_param_missing_from_the_top_trials_keeps_its_distribution() -> None:
    parent = {"x": FloatDistribution(0.0, 1.0), "lora.r": CategoricalDistribution([4, 8])}
    out = narrow_space(parent, [{"x": 0.5}], margin=0.1)
    assert out["lora.r"] == parent["lora.r"]


def test_negative_margin_is_refused() -> None:
    with pytest.raises(ValueError, match="margin"):
        narrow_space({"x": FloatDistribution(0.0, 1.0)}, [{"x": 0.5}], margin=-0.1)


def _trial(number: int, value: float | None, state: TrialState = TrialState.COMPLETE) -> optuna.trial.FrozenTrial:
    t = create_trial(
        state=state, value=value, params={"x": float(number)}, distributions={"x": FloatDistribution(0, 100)}
    )
    t.number = number
    return t


def test_select_top_k_by_direction_complete_only() -> None:
    trials = [
        _trial(0, 0.3),
        _trial(1, 0.9),
        _trial(2, 0.5),
        _trial(3, None, TrialState.FAIL),
        _trial(4, 0.95, TrialState.PRUNED),
        _trial(5, 0.9),
    ]
    assert [t.number for t in select_top(trials, 2, ["maximize"])] == [1, 5]  # tie: lower number first
    assert [t.number for t in select_top(trials, 2, ["minimize"])] == [0, 2]
    assert [t.number for t in select_top(trials, 10, ["maximize"])] == [1, 5, 2, 0]


def test_top_k_trials_define_the_span() -> None:
    trials = [_trial(n, v) for n, v in [(10, 0.1), (20, 0.8), (30, 0.7), (90, 0.2)]]
    top = select_top(trials, 2, ["maximize"])
    out = narrow_space({"x": FloatDistribution(0.0, 100.0)}, [t.params for t in top], margin=0.0)
    assert (out["x"].low, out["x"].high) == (20.0, 30.0)


def _mo_trial(
    number: int, values: list[float] | None, state: TrialState = TrialState.COMPLETE
) -> optuna.trial.FrozenTrial:
    t = create_trial(
        state=state, values=values, params={"x": float(number)}, distributions={"x": FloatDistribution(0, 100)}
    )
    t.number = number
    return t


def test_several_objectives_rank_the_pareto_front_first_its_extremes_leading() -> None:
    # minimize both: front {0, 1, 2, 3} (0 and 3 its extremes; crowding 2: 1.5, 1: 0.7), then {4}, then {5}
    points = {0: [0.0, 10.0], 1: [1.0, 6.0], 2: [2.0, 5.0], 3: [10.0, 0.0], 4: [3.0, 7.0], 5: [11.0, 11.0]}
    trials = [_mo_trial(n, v) for n, v in points.items()] + [_mo_trial(6, None, TrialState.FAIL)]
    ranked = [t.number for t in select_top(trials, 10, ["minimize", "minimize"])]
    assert ranked == [0, 3, 2, 1, 4, 5]
    assert [t.number for t in select_top(trials, 3, ["minimize", "minimize"])] == ranked[:3]
    assert sorted(t.number for t in pareto_front(trials, ["minimize", "minimize"])) == [0, 1, 2, 3]
    # maximizing the second objective instead: 0 dominates 1 to 4, and 5 has the largest second value
    assert sorted(t.number for t in pareto_front(trials, ["minimize", "maximize"])) == [0, 5]
