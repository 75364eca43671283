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


def test_processors_take_transformers_return_tensors_pt():
    """`processor(x, return_tensors="pt")`, as transformers' docs write it, was refused as
    "input 0: ... got return_tensors=: drop it"."""
    import numpy as np
    from torch_geometric.data import Data

    import zoo
    from zoo.errors import ConfigError

    inputs = {"hubert-tiny-fsdd": (np.full(8000, 0.01, np.float32), {"sampling_rate": 16000}),
              "gmml-vit-tiny-cifar10": (np.zeros((32, 32, 3), np.uint8), {}),
              "graphmae-mutag": (Data(x=torch.eye(7)[[0, 1, 2]], edge_index=torch.tensor([[0, 1], [1, 2]])), {}),
              "tjepa-adult": (zoo.__path__[0] + "/examples/tabular/adult_test_rows.csv", {})}
    for name, (item, options) in inputs.items():
        processor = zoo.load(name).processor
        items = item if name == "tjepa-adult" else [item]  # a table is one input
        batch, plain = processor(items, return_tensors="pt", **options), processor(items, **options)
        assert batch.keys() == plain.keys() and all(torch.equal(batch[key], plain[key]) for key in batch), name
        with pytest.raises(ConfigError, match="return_tensors='np'; the zoo's processors give torch tensors"):
            processor(items, return_tensors="np", **options)
