"""Training's progress display, by where the output goes.

With ``train.progress: true`` training shows a bar per epoch on a terminal and in Jupyter
(tqdm's notebook widget, or its text bar where ipywidgets is missing), and prints one line per
epoch (train and validation ELBO) everywhere, log files included, where a bar would only add
noise. With ``train.progress: false`` (``--quiet``) it prints nothing.
"""

import importlib.util
import sys


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (an IPython shell run by ``IPKernelApp``)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def progress_bar(iterable, shown: bool, **options):
    """A tqdm bar over ``iterable``, drawn if ``shown`` and the output is a terminal or a notebook."""
    notebook = in_notebook()
    if notebook and importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.notebook import tqdm
    else:
        from tqdm import tqdm
    return tqdm(iterable, disable=not (shown and (notebook or sys.stderr.isatty())), dynamic_ncols=True, **options)
