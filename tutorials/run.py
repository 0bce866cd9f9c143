"""Execute the tutorial notebooks in place and keep their outputs.

    python tutorials/run.py                 # full run: regenerates the committed outputs
    ZOO_QUICK=1 python tutorials/run.py 03  # quick mode (what CI does), only notebooks matching 03

Each notebook runs top to bottom in a fresh kernel with the repository root as working dir.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def notebooks(patterns=()) -> list[Path]:
    found = sorted(HERE.glob("[0-9][0-9]_*.ipynb"))
    if patterns:
        found = [p for p in found if any(pat in p.name for pat in patterns)]
    return found


def execute(path: Path, save: bool = True, timeout: int = 1800) -> float:
    """Run one notebook; returns seconds taken. Raises on the first failing cell."""
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(HERE.parent)}}).execute()
    if save:
        nbformat.write(nb, path)
    return time.perf_counter() - start


if __name__ == "__main__":
    for nb_path in notebooks(sys.argv[1:]):
        print(f"{nb_path.name}: {execute(nb_path):.1f} s", flush=True)
