"""The training engine: the SVI loop with KL warm-up, early stopping, checkpoints and exact
resume, the first-batch checks and the TensorBoard log; it writes a run folder's config,
checkpoint and metrics."""
