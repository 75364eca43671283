"""zoo.processing's helpers shared by every family's processor and `forward`."""

import pytest
import torch

from zoo.processing import first_non_finite


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_first_non_finite_finds_the_first_bad_entry(dtype):
    values = torch.zeros(3, 4, 5, dtype=dtype)
    assert first_non_finite(values) is None
    values[2, 0, 1] = float("-inf")
    values[1, 3, 4] = float("nan")
    assert first_non_finite(values) == [1, 3, 4]


def test_first_non_finite_is_not_fooled_by_a_sum_that_overflows():
    """The fast path sums the values: finite values whose sum overflows are searched, and pass."""
    assert first_non_finite(torch.full((8,), 3e38)) is None
    assert first_non_finite(torch.full((8,), 6e4, dtype=torch.float16)) is None
    assert first_non_finite(torch.zeros(0, 3)) is None
