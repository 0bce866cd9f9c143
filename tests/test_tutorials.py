"""Every tutorial notebook runs top to bottom in quick mode (ZOO_QUICK=1), as CI does.

Outputs are not saved: the committed notebooks keep the outputs of a full run
(regenerate them with ``python tutorials/run.py``).
"""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tutorials"))
import run as tutorial_runner  # noqa: E402

NOTEBOOKS = tutorial_runner.notebooks()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_tutorial_runs_in_quick_mode(path, monkeypatch, tmp_path):
    monkeypatch.setenv("ZOO_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    tutorial_runner.execute(path, save=False)


def test_every_tutorial_is_numbered_and_found():
    names = {p.name for p in (ROOT / "tutorials").glob("*.ipynb")}
    assert names == {p.name for p in NOTEBOOKS}, "tutorial notebooks must be named NN_title.ipynb"
