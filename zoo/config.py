"""Run-wide settings read from the environment: quick mode, cache folder, default device.

``ZOO_QUICK=1`` makes tutorials, the demo and benchmarks use small epochs and data (CI sets it).
``ZOO_CACHE`` moves the disk cache of built corpora (default ``~/.cache/avspeech-zoo``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch


def is_quick() -> bool:
    """True when ``ZOO_QUICK`` is set to a true value (1, true, yes)."""
    return os.environ.get("ZOO_QUICK", "").strip().lower() in ("1", "true", "yes", "on")


def quick(full, fast):
    """``fast`` in quick mode, else ``full``: ``epochs = quick(200, 3)``."""
    return fast if is_quick() else full


def cache_dir() -> Path:
    """Folder where built corpora and other derived files are cached (created on demand)."""
    root = Path(os.environ.get("ZOO_CACHE", Path.home() / ".cache" / "avspeech-zoo"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def default_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA when present, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
