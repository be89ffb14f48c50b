"""Training runs: the SVI loop, run folders, checkpoints and resume, the CSV metrics log."""
