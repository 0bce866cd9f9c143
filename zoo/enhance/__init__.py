"""Unsupervised speech enhancement with a frozen clean-speech prior and NMF noise.

* :func:`enhance` -- waveforms in, speech and noise estimates out (VEM, mean-field VEM, MCEM).
* :class:`~zoo.enhance.model.NoisySpeechModel` -- the noisy-speech model as a Pyro model.
* :func:`~zoo.enhance.inference.infer` -- the one inference loop, on padded batches of spectra.
* :mod:`zoo.enhance.baselines` -- spectral subtraction, Wiener filtering with a noise tracker, NMF.
"""

from zoo.enhance.api import Enhanced, enhance
from zoo.enhance.baselines import nmf_enhance, spectral_subtraction, wiener_filter
from zoo.enhance.inference import METHODS, infer
from zoo.enhance.model import NoiseModel, NoisySpeechModel

__all__ = [
    "METHODS",
    "Enhanced",
    "NoiseModel",
    "NoisySpeechModel",
    "enhance",
    "infer",
    "nmf_enhance",
    "spectral_subtraction",
    "wiener_filter",
]
