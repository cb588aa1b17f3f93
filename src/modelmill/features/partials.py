"""Mergeable partial statistics: what a feature learns from one shard of its column, in a
form that merges with the other shards' so that fitting from the merge gives the state
``fit`` gives on the whole column (the sharded fit on a Ray cluster, ``modelmill.sharding``).

* :class:`Counts` — distinct values with their counts and the row of their first
  occurrence. Exact: a vocabulary with a minimum frequency, the most common value and every
  tie between equal counts come out as pandas' ``value_counts`` gives them on the whole
  column (count descending, ties in order of first occurrence: its sort is stable).
* :class:`Sketch` — the multiset of a numeric column as sorted distinct values and counts.
  While a column has at most ``SKETCH_CAP`` distinct values it is the data itself, and the
  order statistics, quantiles and medians read from it are bit for bit those NumPy gives
  on the whole column (:meth:`Sketch.quantile` follows ``np.quantile``'s linear method,
  :meth:`Sketch.median` ``np.median``). Past the cap it is compressed to about
  ``SKETCH_SIZE`` entries: neighbouring values whose joint count is at most n/SKETCH_SIZE
  become one entry (a value that holds more rows than that stays exact), so a quantile read
  from it is an order statistic at most ``rank_tolerance`` of the rows away from the true
  one. Merging compressed sketches pairwise (a tree, as :func:`merge_all` does) adds that
  error once per level: ε ≤ 2·(1 + ⌈log₂ shards⌉) / SKETCH_SIZE of the rows.
* :class:`Moments` — count, mean and sum of squared deviations, merged with Chan et al.'s
  pairwise update ("Updating formulae and a pairwise algorithm for computing sample
  variances", 1979): numerically stable in any merge order.

Sums of floating-point numbers depend on the order they are added in, and so do NumPy's
``mean`` and ``std`` of the whole column (pairwise summation in row order): means and
standard deviations from merged partials agree with them to about 1e-15 relative, not
bit for bit. Counts, vocabularies, minima, maxima, order statistics and quantiles of an
exact sketch are equal.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, Self, TypeVar

import numpy as np
import pandas as pd

from modelmill.errors import ModelError

SKETCH_CAP = 200_000  # distinct values a numeric sketch keeps exactly
SKETCH_SIZE = 20_000  # entries a sketch is compressed to past the cap


class Partial:
    """What a feature learned from one shard; merges with another shard's of the same feature."""

    def merge(self, other: Self) -> Self:
        raise NotImplementedError


class Mergeable(Protocol):
    def merge(self, other: Self) -> Self: ...


P = TypeVar("P", bound=Partial)
M = TypeVar("M", bound=Mergeable)


def merge_all(partials: Sequence[M]) -> M:
    """The merge of ``partials`` (in row order), pairwise as a balanced tree, so a compressed
    sketch's error grows with the logarithm of the shards, not their number."""
    if not partials:
        raise ValueError("no partials to merge")
    level = list(partials)
    while len(level) > 1:
        level = [level[i].merge(level[i + 1]) if i + 1 < len(level) else level[i] for i in range(0, len(level), 2)]
    return level[0]


def rank_tolerance(shards: int) -> float:
    """The largest error, as a share of the rows, of a quantile read from a compressed sketch
    merged from ``shards`` partials; 0 when no sketch was compressed."""
    return 2.0 * (1 + math.ceil(math.log2(max(shards, 1)))) / SKETCH_SIZE


# --------------------------------------------------------------------- counts


@dataclass(frozen=True)
class Counts:
    """Distinct values → (count, first row); values kept in order of first occurrence."""

    table: dict[str, tuple[int, int]] = field(default_factory=dict)

    @classmethod
    def of(cls, values: Sequence[str | None], rows: np.ndarray) -> Counts:
        """Counts of the present values; ``rows`` (ascending) are the rows' global positions."""
        frame = pd.DataFrame({"value": pd.Series(values, dtype=object), "row": rows}).dropna(subset=["value"])
        grouped = frame.groupby("value", sort=False)["row"].agg(["size", "min"])  # in order of appearance
        return cls({str(value): (int(size), int(first))
                    for value, size, first in zip(grouped.index, grouped["size"], grouped["min"])})

    def merge(self, other: Counts) -> Counts:
        table = dict(self.table)
        for value, (count, first) in other.table.items():
            seen = table.get(value)
            table[value] = (count, first) if seen is None else (seen[0] + count, min(seen[1], first))
        return Counts(dict(sorted(table.items(), key=lambda item: item[1][1])))

    def ranked(self) -> list[tuple[str, int]]:
        """(value, count), most frequent first, ties in order of first occurrence: what
        ``value_counts`` (a stable sort of the values in order of appearance) gives."""
        ordered = sorted(self.table.items(), key=lambda item: (-item[1][0], item[1][1]))
        return [(value, count) for value, (count, _) in ordered]

    def in_order(self) -> list[str]:
        """The values in order of first occurrence (what ``unique()`` gives)."""
        return [value for value, _ in sorted(self.table.items(), key=lambda item: item[1][1])]

    def most_common(self) -> str | None:
        ranked = self.ranked()
        return ranked[0][0] if ranked else None

    @property
    def total(self) -> int:
        return sum(count for count, _ in self.table.values())


# -------------------------------------------------------------------- moments


@dataclass(frozen=True)
class Moments:
    """Count, mean and sum of squared deviations from the mean of some numbers."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    @classmethod
    def of(cls, values: np.ndarray) -> Moments:
        if values.size == 0:
            return cls()
        mean = float(values.mean())
        return cls(int(values.size), mean, float(((values - mean) ** 2).sum()))

    @classmethod
    def constant(cls, value: float, n: int) -> Moments:
        return cls(n, float(value), 0.0) if n else cls()

    def merge(self, other: Moments) -> Moments:
        if not other.n:
            return self
        if not self.n:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        return Moments(n, self.mean + delta * other.n / n, self.m2 + other.m2 + delta * delta * self.n * other.n / n)

    @property
    def std(self) -> float:
        """Population standard deviation (``np.std``'s default, ddof 0)."""
        return math.sqrt(max(self.m2, 0.0) / self.n) if self.n else 0.0


# --------------------------------------------------------------------- sketch


@dataclass(frozen=True)
class Sketch:
    """A numeric multiset as sorted distinct ``values`` and their ``counts``; ``exact`` until
    it was compressed."""

    values: np.ndarray
    counts: np.ndarray
    exact: bool = True
    cap: int = SKETCH_CAP  # distinct values kept exactly
    size: int = SKETCH_SIZE  # entries past the cap

    @classmethod
    def of(cls, values: np.ndarray, *, cap: int = SKETCH_CAP, size: int = SKETCH_SIZE) -> Sketch:
        """The sketch of the present (non-NaN) ``values``."""
        distinct, counts = np.unique(values, return_counts=True)
        return cls(distinct, counts.astype(np.int64), True, cap, size).bounded()

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    def merge(self, other: Sketch) -> Sketch:
        values = np.concatenate([self.values, other.values])
        counts = np.concatenate([self.counts, other.counts])
        return self._combined(values, counts, self.exact and other.exact).bounded()

    def with_value(self, value: float, count: int) -> Sketch:
        """The multiset with ``count`` more copies of ``value`` (a fill value for the missing)."""
        if count <= 0:
            return self
        values = np.concatenate([self.values, np.asarray([value], dtype=self.values.dtype)])
        return self._combined(values, np.concatenate([self.counts, [count]]), self.exact)

    def mapped(self, function: Callable[[np.ndarray], np.ndarray]) -> Sketch:
        """Every value passed through a nondecreasing elementwise ``function`` (clipping,
        scaling): values that become equal merge."""
        return self._combined(function(self.values), self.counts, self.exact)

    def bounded(self) -> Sketch:
        return self if self.values.size <= self.cap else self.compressed(self.size)

    def _combined(self, values: np.ndarray, counts: np.ndarray, exact: bool) -> Sketch:
        """The sketch of ``values`` with ``counts`` (unsorted, repeating), at this one's limits."""
        distinct, inverse = np.unique(values, return_inverse=True)
        summed = np.zeros(distinct.size, dtype=np.int64)
        np.add.at(summed, inverse, counts)
        return Sketch(distinct, summed, exact, self.cap, self.size)

    def compressed(self, size: int) -> Sketch:
        """About ``size`` entries: runs of neighbours holding at most n/size rows together
        become their middle value; a value holding more rows than that stays on its own."""
        step = self.n / size
        before = np.cumsum(self.counts) - self.counts  # rows ranked below each value
        heavy = self.counts >= step
        heavy[[0, -1]] = True  # the minimum and the maximum stay exact
        bucket = np.floor(before / step).astype(np.int64)
        starts = np.ones(self.values.size, dtype=bool)
        starts[1:] = (bucket[1:] != bucket[:-1]) | heavy[1:] | heavy[:-1]
        group = np.cumsum(starts) - 1
        weights = np.bincount(group, weights=self.counts).astype(np.int64)
        first = np.flatnonzero(starts)
        middle_rank = before[first] + weights // 2  # the entry holding each group's middle row
        middle = np.searchsorted(np.cumsum(self.counts), middle_rank, side="right")
        return Sketch(self.values[middle], weights, False, self.cap, self.size)

    def order_statistic(self, ranks: np.ndarray) -> np.ndarray:
        """The values at 0-based ``ranks`` of the sorted multiset."""
        return self.values[np.searchsorted(np.cumsum(self.counts), ranks, side="right")]

    def quantile(self, q: np.ndarray | Sequence[float]) -> np.ndarray:
        """``np.quantile(multiset, q)`` (linear method), by the same arithmetic."""
        q = np.asarray(q, dtype=np.float64)
        n = self.n
        virtual = (n - 1) * q
        previous = np.floor(virtual)
        following = previous + 1
        above = virtual >= n - 1
        previous[above], following[above] = n - 1, n - 1
        below = virtual < 0
        previous[below], following[below] = 0, 0
        gamma = virtual - np.where(above, -1.0, np.where(below, 0.0, previous))
        a = self.order_statistic(previous.astype(np.int64)).astype(np.float64)
        b = self.order_statistic(following.astype(np.int64)).astype(np.float64)
        difference = b - a
        result = a + difference * gamma
        return np.where(gamma >= 0.5, b - difference * (1 - gamma), result)

    def median(self) -> float:
        """``np.median(multiset)``: the middle value, or the mean of the middle two."""
        n = self.n
        if n % 2:
            return float(self.order_statistic(np.array([n // 2]))[0])
        low, high = self.order_statistic(np.array([n // 2 - 1, n // 2])).astype(np.float64)
        return float(np.mean(np.array([low, high])))

    def mode(self) -> float:
        """The most frequent value, the smallest on ties (``np.unique`` then ``argmax``)."""
        return float(self.values[int(np.argmax(self.counts))])

    def moments(self) -> Moments:
        """Mean and squared deviations of the multiset, each sum exactly rounded (fsum)."""
        n = self.n
        if not n:
            return Moments()
        values = self.values.astype(np.float64)
        if not np.isfinite(values).all():  # ±inf: fsum raises on inf - inf, where fit's NumPy gives nan
            with np.errstate(invalid="ignore"):
                mean = float(np.sum(values * self.counts)) / n
                return Moments(n, mean, float(np.sum(self.counts * (values - mean) ** 2)))
        mean = math.fsum((values * self.counts).tolist()) / n
        return Moments(n, mean, math.fsum((self.counts * (values - mean) ** 2).tolist()))

    def count_outside(self, low: float, high: float) -> int:
        return int(self.counts[(self.values < low) | (self.values > high)].sum())


def expect(partial: Partial, kind: type[P], feature: str) -> P:
    """``partial`` as the kind a feature fits from; a clear error for another feature's."""
    if not isinstance(partial, kind):
        raise ModelError(f"feature {feature!r} is fitted from a {kind.__name__}, not a {type(partial).__name__}; "
                         "partials of different features were mixed up")
    return partial
