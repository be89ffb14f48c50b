"""How a trained model is measured: importance-sampled log p(x), IWAE bounds, weight diagnostics,
exact references, and the ``pyrovae evaluate`` command."""
