"""How parameters are fitted: named gradient estimators (each a Pyro loss), their surrogates and
particle machinery, wake-sleep and Monte Carlo EM, the HMC shared by MCEM and AIS, optimizers
and learning-rate schedules, the SVI step and the ELBO of a whole split."""
