"""The R2AC runtime: the run's config, the rollout layout, actors and backends, the learner update,
the run directory (config, checkpoints, metrics, RNG) and the training loop."""
