"""Shared test settings."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """The zoo's test networks are small: on a 2-core machine shared with other work, one torch
    thread runs them several times faster than two competing threads (measured: 4-30x for small
    Pyro steps), and it makes timings steadier."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
