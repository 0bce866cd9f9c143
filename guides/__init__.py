"""Swappable Pyro guides: any guide here that samples a model's latent sites fits that model."""

from guides.encoders import MLPEncoder
from guides.mean_field import MeanField

__all__ = ["MLPEncoder", "MeanField"]
