"""Fixtures shared by several test modules."""

import os

import pytest
import torch

# Child processes (bundle CLIs) write UTF-8 whatever the machine's locale; the tests decode it as UTF-8.
os.environ["PYTHONUTF8"] = "1"


@pytest.fixture
def one_thread():
    """Tiny tensors: one thread avoids oversubscription on the shared CPU (restored afterwards).

    Use it module-wide with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
