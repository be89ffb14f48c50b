"""The 'Sample quality' section of report.md, from a run's ``quality.json``
(:mod:`pyrovae.sample_quality.run`): the model's scores beside the test split's floor."""

from pathlib import Path

from .markdown import markdown_table, update_section

SECTION = "Sample quality"
NAMES = {"frechet": "Fréchet distance (lower is better)", "precision": "precision", "recall": "recall"}


def _cell(entry: dict, digits: int) -> str:
    sd = "" if entry["sd"] is None else f" ± {entry['sd']:.{digits}f}"
    return f"{entry['mean']:.{digits}f}{sd}"


def write_quality_report(run_dir, summary: dict) -> Path:
    """Rewrite the Sample quality section of ``run_dir/report.md`` from ``summary``."""
    rows = [[NAMES[k], _cell(summary["model"][k], 2 if k == "frechet" else 3),
             _cell(summary["floor"][k], 2 if k == "frechet" else 3)] for k in NAMES]
    table = markdown_table(["score", f"model ({summary['samples']} samples)",
                            f"test split ({summary['floor_samples']} images): the floor"], rows)
    accuracy = summary["classifier_accuracy"]
    features = summary["features"] + ("" if accuracy is None else f"; its accuracy {accuracy:.4f}")
    body = (f"Samples are means of p(x|z) with z from the prior (checkpoint of epoch "
            f"{summary['checkpoint']['epoch']}, best-validation parameters), scored against the training split; "
            f"± is the standard deviation over {len(summary['seeds'])} seed(s) of the draw. The floor is the score "
            f"of real test images at the same size: a Fréchet distance from finitely many samples is biased "
            f"upwards, so the model is indistinguishable from the data by this score when it reaches the floor.\n\n"
            f"Features: {features}.\n\n{table}")
    return update_section(run_dir, SECTION, body)
