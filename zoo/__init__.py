"""A Pyro model zoo of probabilistic generative models for audio-visual speech processing.

Heavy modules (models, enhancement, plots) are imported on use, so ``import zoo`` is quick.
"""

from zoo.errors import ZooInputError

__version__ = "0.1.0"

__all__ = ["ZooInputError", "__version__", "load"]


def load(path, model=None, guide=None, *, device=None):
    """The model stored in checkpoint ``path`` (see :func:`zoo.checkpoint.load`)."""
    from zoo.checkpoint import load as load_checkpoint_model

    return load_checkpoint_model(path, model, guide, device=device)
