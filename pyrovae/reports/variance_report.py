"""The "Variance" section of a report and its figure, from the results the variance
laboratory (:mod:`pyrovae.lab.variance`) saves in ``variance.json``."""

import math
from pathlib import Path
from typing import Optional

from ..lab.variance import result_rows
from .markdown import markdown_table, update_section
from .variance_figures import variance_curves

SECTION = "Variance"
SUMMARY_GROUPS = ("encoder", "decoder")


def write_variance_report(out: Path, results: dict) -> Path:
    """``figures/variance.png`` and the Variance section of ``out``'s report."""
    figure = variance_curves(result_rows(results), out / "figures" / "variance.png")
    return update_section(out, SECTION, report_body(results, figure.relative_to(out)))


def report_body(results: dict, figure: Path) -> str:
    """Markdown: the settings, then per snapshot a table of the encoder and decoder numbers
    with each estimator's variance relative to the pathwise estimator's."""
    s = results["settings"]
    parts = [f"{s['draws']} gradient draws per estimator on one minibatch of {s['batch_size']} training "
             f"points (seed {s['seed']}), at frozen parameters. Variance is the trace of the covariance "
             f"of the loss gradient (the sum of per-parameter variances); SNR the mean over parameters of "
             f"|mean| / sd (below about sqrt(2 / (pi N)) = {math.sqrt(2 / (math.pi * s['draws'])):.3f} it "
             f"is noise); cosine compares the mean gradient of all parameters with the reference; mean t^2 "
             f"is about 1 for an unbiased estimator and grows with a bias (variance.csv also has the "
             f"largest |t| and the Bonferroni count).",
             f"![variance and SNR against training step]({figure})"]
    for snapshot in results["snapshots"]:
        estimators = snapshot["estimators"]
        base_label = "pathwise" if "pathwise" in estimators else next(iter(estimators))
        base = [estimators[base_label]["groups"][g]["trace"] for g in SUMMARY_GROUPS]
        exact = any("enumeration" in entry["reference"] for entry in estimators.values())
        rows = []
        for label, entry in estimators.items():
            enc, dec = (entry["groups"][g] for g in SUMMARY_GROUPS)
            every = entry["groups"]["all"]
            bias = ([f"{_number(every.get('relative_bias'), '.3g')} ({_number(every.get('relative_noise'), '.2g')})"]
                    if exact else [])
            rows.append([label, _number(enc["trace"], ".3g"), _number(_ratio(enc["trace"], base[0]), ".3g"),
                         _number(dec["trace"], ".3g"), _number(_ratio(dec["trace"], base[1]), ".3g"),
                         f"{_number(enc['snr'], '.3g')} / {_number(dec['snr'], '.3g')}",
                         _number(every["cosine"], ".4f"), *bias,
                         f"{_number(enc['mean_t_squared'], '.2f')} / {_number(dec['mean_t_squared'], '.2f')}",
                         _number(1e3 * enc["seconds_per_draw"], ".2f"), _number(enc["variance_x_seconds"], ".3g"),
                         entry["reference"]])
        parts.append(f"### Epoch {snapshot['epoch']} (step {snapshot['step']})\n\n" + markdown_table(
            ["estimator", "encoder variance", f"x {base_label}", "decoder variance", f"x {base_label}",
             "SNR enc / dec", "cosine", *(["norm of bias / norm of exact (noise)"] if exact else []), "mean t^2 enc / dec",
             "ms per draw", "encoder variance x s", "reference"], rows))
    if any("enumeration" in entry["reference"] for snapshot in results["snapshots"]
           for entry in snapshot["estimators"].values()):
        parts.append("Where the reference is exact (enumeration of a small discrete latent space), the norm of the "
                     "bias over the norm of the exact gradient is the distance of the mean gradient from the exact one "
                     "relative to the exact one's length; in brackets the value an unbiased estimator would show from "
                     "the noise of its draws alone.")
    return "\n\n".join(parts)


def _number(value: Optional[float], spec: str) -> str:
    """``value`` formatted, or ``n/a`` where the measurement has none (NaN in memory, null in
    variance.json: e.g. the SNR of a parameter without gradient)."""
    return "n/a" if value is None or not math.isfinite(value) else format(value, spec)


def _ratio(value: Optional[float], base: Optional[float]) -> Optional[float]:
    return None if value is None or not base else value / base
