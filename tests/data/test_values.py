"""as_strings has a Python path for a few rows (online requests) and a vectorised one;
they must read every cell the same way."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelmill.data import values


@pytest.mark.parametrize("cells", [
    ["a", " b ", None, "?", "NA", 1, 2.5, True, np.nan, "", "-", "x y", "null", " None "],
    ["1", "2"],
    [None, None],
    [1.0, 2.0, None, 1e20],
    [pd.NA, "x"],
])
def test_small_and_large_columns_are_read_alike(cells: list[object]) -> None:
    small = values.as_strings(pd.Series(cells, dtype=object))
    times = values.SMALL_COLUMN // len(cells) + 1
    repeated = values.as_strings(pd.Series(cells * times, dtype=object))  # past SMALL_COLUMN: vectorised
    assert small.dtype == repeated.dtype
    assert list(small) * times == list(repeated)


@pytest.mark.parametrize("column", [
    pd.Series(["a", " b", None, "?"]),                    # pandas' own string dtype
    pd.Series([1.5, np.nan, 3.0]),
    pd.Series([1, 2, 3]),
    pd.Series([True, False]),
])
def test_typed_columns_are_read_alike(column: pd.Series) -> None:
    times = values.SMALL_COLUMN // len(column) + 1
    small = values.as_strings(column)
    repeated = values.as_strings(pd.concat([column] * times, ignore_index=True))
    assert list(small) * times == list(repeated)
