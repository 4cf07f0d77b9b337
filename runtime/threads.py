"""One thread for torch: the box decodes in a single worker, and a Pi's cores belong to Pd and the kernel.

On a busy machine torch's default thread pool makes a tiny decode 100x slower (the threads spin against
each other), so every runtime entry point calls this before the first decode.
"""

from __future__ import annotations

import contextlib

import torch


def limit_torch_threads() -> None:
    torch.set_num_threads(1)
    # Fails once inter-op work has started (or it was set before): intra-op is what decode uses anyway.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
