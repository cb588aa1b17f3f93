"""Attributions of any model through its predictions alone: Shapley values of the input
columns estimated from random orders (Štrumbelj & Kononenko 2014), between the baseline
record and the record.

Along one order the columns switch one by one from the baseline's values to the record's;
each column gets the change of the raw output its switch caused. The changes along an order
telescope to f(record) − f(baseline), so completeness holds exactly for every estimate, and
the mean over orders converges to the Shapley values. Each order is used with its reverse
(antithetic sampling), which halves the error for models that are nearly additive. For a
model that is additive over its columns every order gives the exact attributions, so one
order is enough.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

ORDERS = 16  # orders per record (8 random ones and their reverses)

Raw = Callable[[list[torch.Tensor]], torch.Tensor]


def column_positions(inputs: int, columns: int) -> list[list[int]]:
    """Which of the model's input tensors belong to each column: one per column, or two (its
    encoded tensor and its raw view, for an ensemble whose members take both)."""
    return [[i for i in range(inputs) if i % columns == j] for j in range(columns)]


def _orders(columns: int, count: int, rng: np.random.Generator) -> np.ndarray:
    if count <= 1:
        return np.arange(columns)[None, :]
    half = [rng.permutation(columns) for _ in range((count + 1) // 2)]
    return np.stack(half + [order[::-1] for order in half])[:count]


def _switched(orders: np.ndarray) -> torch.Tensor:
    """(orders × (columns + 1), columns) bool: which columns hold the record's value at each
    point of each order (none at the first point, all at the last)."""
    count, columns = orders.shape
    masks = np.zeros((count, columns + 1, columns), dtype=bool)
    for k, order in enumerate(orders):
        for step, column in enumerate(order):
            masks[k, step + 1:, column] = True
    return torch.from_numpy(masks.reshape(count * (columns + 1), columns))


def shapley_sampling(raw: Raw, inputs: list[torch.Tensor], baseline: list[torch.Tensor], columns: int,
                     classes: torch.Tensor, *, orders: int = ORDERS, seed: int = 0) -> dict[str, np.ndarray]:
    """Per record and column attributions of the raw output ``classes`` picks.

    Args:
        raw: The model's raw outputs (rows, outputs) for a list of input tensors.
        inputs: The records' tensors as the model takes them, each (records, ...).
        baseline: The baseline record's tensors, each (1, ...), shaped as ``inputs``.
        columns: How many input columns (features) there are.
        classes: (records,) int64: which raw output each record's attributions explain.
        orders: Orders of the columns per record (1: exact for an additive model).
        seed: Seed of the orders.
    """
    rng = np.random.default_rng(seed)
    positions = column_positions(len(inputs), columns)
    owner = {i: j for j, members in enumerate(positions) for i in members}
    rows = int(inputs[0].shape[0])
    attributions = np.zeros((rows, columns))
    output, start = np.zeros(rows), np.zeros(rows)
    for r in range(rows):
        chosen = _orders(columns, orders, rng)
        mask = _switched(chosen)  # (points, columns)
        mixed = []
        for i, (x, b) in enumerate(zip(inputs, baseline, strict=True)):
            keep = mask[:, owner[i]].view(-1, *([1] * (x.dim() - 1)))
            mixed.append(torch.where(keep, x[r:r + 1], b))  # (points, ...)
        values = raw(mixed)[:, int(classes[r])].double().numpy().reshape(len(chosen), columns + 1)
        changes = np.diff(values, axis=1)  # (orders, columns): the change of each step of each order
        for k, order in enumerate(chosen):
            attributions[r, order] += changes[k]
        attributions[r] /= len(chosen)
        output[r], start[r] = values[0, -1], values[0, 0]
    gap = np.abs(attributions.sum(axis=1) - (output - start))
    return {"attributions": attributions, "output": output, "baseline": start, "gap": gap,
            "steps": np.full(rows, max(1, orders))}
