"""The narrowing rule: the search space of stage k from the best trials of stage k-1.

For every parameter of the parent stage's space, given the parameter values of its ``top_k`` best COMPLETE trials:

- **numeric** (float or int): the new range is ``[min - margin * W, max + margin * W]``, where ``min``/``max`` span
  the top-k values and ``W`` is the width of the parent range, so a stage never collapses to a point even when the
  top-k agree. Log parameters do this in log space. The result is clipped to the original (stage 0) bounds.
  Ints stay ints and stepped values stay on their grid (the bounds are rounded outwards onto it).
- **categorical**: the choices present in the top-k, in their original order.
- a parameter none of the top-k trials has (a conditional one) keeps the parent distribution.

``margin = 0`` gives exactly the span of the top-k; ``margin = 0.5`` adds half the parent width on each side.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def select_top(trials: Sequence[Any], k: int, directions: Sequence[str]) -> list[Any]:
    """The ``k`` best COMPLETE trials for ``directions`` (``["maximize"]``, ``["minimize", "minimize"]``, ...).

    One objective: by value (ties: lower trial number first). Several: the Pareto front first, then the next
    fronts (non-dominated sorting); within a front the most isolated trials first (NSGA-II's crowding distance,
    so a front's extremes lead), ties by trial number.
    """
    from optuna.trial import TrialState

    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None]
    signs = [-1.0 if d == "maximize" else 1.0 for d in directions]
    if len(signs) == 1:
        return sorted(complete, key=lambda t: (signs[0] * t.values[0], t.number))[: max(k, 0)]
    points = {t.number: [s * v for s, v in zip(signs, t.values)] for t in complete}
    ordered: list[Any] = []
    rest = list(complete)
    while rest and len(ordered) < k:
        front = [t for t in rest if not any(_dominates(points[o.number], points[t.number]) for o in rest)]
        crowding = _crowding([points[t.number] for t in front])
        ordered += [t for _, _, t in sorted(zip((-c for c in crowding), (t.number for t in front), front))]
        rest = [t for t in rest if t not in front]
    return ordered[: max(k, 0)]


def pareto_front(trials: Sequence[Any], directions: Sequence[str]) -> list[Any]:
    """The non-dominated COMPLETE trials (for one objective: the best one)."""
    top = select_top(trials, len(trials), directions)
    if len(directions) == 1:
        return top[:1]
    signs = [-1.0 if d == "maximize" else 1.0 for d in directions]
    points = {t.number: [s * v for s, v in zip(signs, t.values)] for t in top}
    return [t for t in top if not any(_dominates(points[o.number], points[t.number]) for o in top)]


def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` dominates ``b`` (all objectives as minimized): no worse anywhere, better somewhere."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def _crowding(points: Sequence[Sequence[float]]) -> list[float]:
    """NSGA-II crowding distance of each point of one front (extremes: infinity)."""
    n = len(points)
    distance = [0.0] * n
    for m in range(len(points[0]) if points else 0):
        order = sorted(range(n), key=lambda i: points[i][m])
        span = points[order[-1]][m] - points[order[0]][m]
        distance[order[0]] = distance[order[-1]] = math.inf
        for j in range(1, n - 1):
            if span > 0:
                distance[order[j]] += (points[order[j + 1]][m] - points[order[j - 1]][m]) / span
    return distance


def narrow_space(
    parent: Mapping[str, Any],
    top_params: Sequence[Mapping[str, Any]],
    margin: float,
    original: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The narrowed space (see the module docstring); ``original`` (default: ``parent``) bounds the result."""
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    original = parent if original is None else original
    narrowed: dict[str, Any] = {}
    for name, dist in parent.items():
        values = [p[name] for p in top_params if name in p]
        if not values:
            narrowed[name] = dist
        elif hasattr(dist, "choices"):
            narrowed[name] = _narrow_categorical(dist, values)
        else:
            narrowed[name] = _narrow_numeric(dist, values, margin, original.get(name, dist))
    return narrowed


def _narrow_categorical(dist: Any, values: Sequence[Any]) -> Any:
    from optuna.distributions import CategoricalDistribution

    kept = [c for c in dist.choices if any(_same_choice(c, v) for v in values)]
    return CategoricalDistribution(kept or list(dist.choices))


def _same_choice(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def _narrow_numeric(dist: Any, values: Sequence[float], margin: float, bounds: Any) -> Any:
    log = bool(getattr(dist, "log", False))
    fwd, inv = (math.log, math.exp) if log else (float, float)
    width = fwd(dist.high) - fwd(dist.low)
    lo = inv(fwd(min(values)) - margin * width)
    hi = inv(fwd(max(values)) + margin * width)
    lo, hi = max(lo, bounds.low), min(hi, bounds.high)
    step = getattr(dist, "step", None)
    is_int = type(dist).__name__ == "IntDistribution"
    if step is not None and not log:
        lo = bounds.low + step * math.floor((lo - bounds.low) / step + 1e-9)
        hi = bounds.low + step * math.ceil((hi - bounds.low) / step - 1e-9)
        hi = min(hi, bounds.high)
        if not is_int:
            lo, hi = round(lo, 12), round(hi, 12)
    elif is_int:
        lo, hi = math.floor(lo + 1e-9), math.ceil(hi - 1e-9)  # exp(log(8)) may be 7.999...
    return _rebuild(dist, lo, hi)


def _rebuild(dist: Any, low: float, high: float) -> Any:
    from optuna.distributions import FloatDistribution, IntDistribution

    if isinstance(dist, IntDistribution):
        return IntDistribution(int(round(low)), int(round(high)), log=dist.log, step=dist.step)
    if dist.step is not None:
        return FloatDistribution(float(low), float(high), step=dist.step)
    return FloatDistribution(float(low), float(high), log=dist.log)
