"""How a trained model is measured: importance-sampled log p(x) with IWAE bounds and weight
diagnostics, annealed importance sampling and BDMC bounds, exact references (closed forms and
quadrature), posterior inspection (NUTS, grid posteriors, optimized Gaussians, inference gaps)."""
