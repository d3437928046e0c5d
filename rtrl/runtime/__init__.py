"""Actors, rollout buffers, backends and the training loop of R2AC."""
