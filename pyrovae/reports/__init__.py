"""Figures and the sections of ``report.md``, one module per product, drawn from run folders
(and the engines' results); no engine imports a report."""
