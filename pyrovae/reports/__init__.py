"""Figures and the sections of a run's ``report.md``, one module per product."""
