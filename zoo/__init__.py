"""A Pyro model zoo of probabilistic generative models for audio-visual speech processing.

Heavy modules (models, enhancement, plots) are imported on use, so ``import zoo`` is quick.
"""

from zoo.errors import ZooInputError

__version__ = "0.1.0"

__all__ = ["ZooInputError", "__version__"]
