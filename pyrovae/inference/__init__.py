"""How parameters are fitted: named gradient estimators (each a Pyro loss), their surrogates and
particle machinery, optimizers and learning-rate schedules, and the ELBO of a whole split."""
