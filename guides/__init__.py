"""Swappable Pyro guides: any guide here that samples a model's latent sites fits that model."""
