"""The run folder, below every engine and report: its files (written atomically), the
checkpoint, the metrics, the evaluation record, and loading a run's model."""
