"""Cost–quality frontiers: Pareto fronts, their upper convex hulls, and AIQ.

**AIQ** (average improvement in quality; RouterBench, Hu et al. 2024), here with joules as
the cost: the area under the non-decreasing upper convex hull of a Pareto front (mixing two
settings at random reaches any point between them) over a cost range ``[low, high]``,
divided by that range. Below the cheapest point the curve counts as 0; beyond the dearest
point it stays flat.

>>> round(aiq([(1.0, 0.5), (3.0, 0.9)], low=1.0, high=5.0), 3)
0.8
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from greenserv_core.errors import InvalidInputError

__all__ = ["aiq", "hull_quality_at", "pareto_front", "upper_hull"]

Point = tuple[float, float]  # (cost, quality)


def pareto_front(points: Sequence[Point]) -> list[Point]:
    """Points not beaten on both cost (lower) and quality (higher), by increasing cost.

    >>> pareto_front([(1, 0.5), (2, 0.4), (3, 0.9), (3, 0.8)])
    [(1, 0.5), (3, 0.9)]
    """
    front: list[Point] = []
    for cost, quality in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or quality > front[-1][1]:
            front.append((cost, quality))
    return front


def upper_hull(front: Sequence[Point]) -> list[Point]:
    """The upper convex hull of a Pareto front (points reachable by mixing two settings).

    >>> upper_hull([(0, 0.0), (1, 0.2), (2, 1.0)])
    [(0, 0.0), (2, 1.0)]
    """
    hull: list[Point] = []
    for point in front:
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (x2 - x1) * (point[1] - y1) - (y2 - y1) * (point[0] - x1) >= 0:  # hull[-1] lies on or below
                hull.pop()
            else:
                break
        hull.append(point)
    return hull


def aiq(points: Sequence[Point], *, low: float, high: float) -> float:
    """Area under the hull of ``points``' Pareto front over ``[low, high]``, divided by ``high − low``."""
    if not high > low:
        raise InvalidInputError(f"the cost range must have high > low, got [{low}, {high}]")
    hull = upper_hull(pareto_front(points))
    if not hull:
        return 0.0
    costs = np.array([c for c, _ in hull])
    qualities = np.array([q for _, q in hull])
    grid = np.linspace(low, high, 2001)
    curve = np.where(grid < costs[0], 0.0, np.interp(grid, costs, qualities))
    area = float(((curve[1:] + curve[:-1]) / 2 * np.diff(grid)).sum())  # trapezoids
    return area / (high - low)


def hull_quality_at(points: Sequence[Point], cost: float) -> float | None:
    """The quality that mixing two of ``points`` at random reaches at ``cost``: the upper convex
    hull of their Pareto front there (flat beyond the dearest point; ``None`` below the
    cheapest, which no mix reaches).

    >>> hull_quality_at([(1.0, 0.5), (3.0, 0.9)], 2.0)
    0.7
    >>> hull_quality_at([(1.0, 0.5), (3.0, 0.9)], 0.5) is None
    True
    """
    hull = upper_hull(pareto_front(points))
    if not hull or cost < hull[0][0]:
        return None
    costs = [c for c, _ in hull]
    qualities = [q for _, q in hull]
    return round(float(np.interp(cost, costs, qualities)), 12)
