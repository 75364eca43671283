"""Graph tests run torch on one thread: on a 2-core machine other jobs share, that is far
faster than two for these small graphs."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
