"""The estimator-variance laboratory: gradient moments of every estimator on the same parameters
and data."""
