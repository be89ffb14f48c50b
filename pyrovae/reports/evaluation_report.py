"""The "Evaluation" section of a run's report, the terminal summary and the bounds figure,
from the summaries :mod:`pyrovae.evaluation.evaluate` saves in ``evaluation.json``.

A report never shows results of parameters other than the checkpoint's: each summary
records the checkpoint it evaluated (epoch and SHA-256), and the section shows only those
of the checkpoint the run folder holds when the report is written. The others (a run
resumed after it was evaluated, or evaluated while it went on training) are named with the
command that evaluates the new parameters."""

import shlex
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from ..runs.checkpoint import current_checkpoint
from ..runs.evaluations import ELBO_ESTIMATORS, EVALUATION, SECTION, evaluation_lock, read_evaluations
from .markdown import markdown_table, update_section

OVER_POINTS = "standard error over data points"  # how ± is labelled: the data's variability, not the sampling's


def headline(s: dict) -> str:
    """log p(x) in one line, the two errors told apart: ``log p(x) = -100.10 ± 0.57 nats
    (± over data points; Monte Carlo error 0.012)`` (that of the mean)."""
    if s.get("method", "is") == "bdmc":
        return f"log p(x) between {s['lower']['mean']:.2f} and {s['upper']['mean']:.2f} nats"
    lp = s["log_marginal"]
    mc = (f"Monte Carlo error {lp['mc_error_of_mean']:.2g}" if lp.get("mc_error_trusted", True)
          else "Monte Carlo error unknown")
    return f"log p(x) = {lp['mean']:.2f} ± {lp['std_error']:.2f} nats (± over data points; {mc})"


def points_phrase(s: dict) -> str:
    """Which points were evaluated, in words: ``all 10000 points`` or ``2000 of 10000 points
    chosen at random (seed 0; their indices are in evaluation.json)``."""
    subset = s.get("subset") or {"chosen": "all", "of": s["num_points"]}
    if subset["chosen"] == "all":
        return f"all {subset['of']} points"
    return (f"{s['num_points']} of {subset['of']} points chosen at random (seed {subset['seed']}; "
            f"their indices are in {EVALUATION})")


def summary_rows(s: dict) -> List[Tuple[str, str]]:
    """The summary as (quantity, value) rows, for the terminal and for report.md."""
    rows = {"is": _importance_rows, "ais": _ais_rows, "bdmc": _bdmc_rows}[s.get("method", "is")](s)
    if "gaps" in s:
        rows += _gap_rows(s["gaps"])
    rows.append(("seconds", f"{s['seconds']:.1f}"))
    return rows


GAP_ROWS = [("log p(x) (this evaluation's)", "log_marginal"), ("ELBO(q), the amortized guide", "elbo_q"),
            ("ELBO(q*), the best of the guide's family per point", "elbo_qstar"),
            ("approximation gap log p(x) - ELBO(q*)", "approximation_gap"),
            ("amortization gap ELBO(q*) - ELBO(q)", "amortization_gap"), ("total gap log p(x) - ELBO(q)", "total_gap")]


def _gap_rows(gaps: dict) -> List[Tuple[str, str]]:
    """The inference gaps of ``--gap-points`` (:func:`~pyrovae.evaluation.posterior.gap_summary`;
    Cremer, Li & Duvenaud 2018): each a mean ± standard error over the first evaluated points,
    then the guide's k-hat and ESS."""
    where = f"gaps, first {gaps['points']} points (q* by {gaps['svi_steps']} SVI steps, {gaps['elbo_samples']} draws)"
    rows = [(f"{where}: {name}", f"{gaps[key]['mean']:.3f} ± {gaps[key]['std_error']:.3f}") for name, key in GAP_ROWS]
    rows.append((f"{where}: guide's Pareto k-hat (median) / ESS (mean), {gaps['khat_samples']} draws",
                 f"{gaps['khat_median']:.3f} / {gaps['ess_mean']:.3f}"))
    return rows


def _importance_rows(s: dict) -> List[Tuple[str, str]]:
    lp, ess, units = s["log_marginal"], s["ess"], s["active_units"]
    bad = s["unreliable"]
    rows = [(f"log p(x), importance sampled (K = {s['num_samples']}): mean ± {OVER_POINTS}",
             f"{lp['mean']:.3f} ± {lp['std_error']:.3f}"),
            (f"unreliable points (Pareto k-hat > {bad['khat_above']})",
             f"{bad['count']} of {s['num_points']} ({100 * bad['share']:.0f}%)")]
    if lp["mc_error_trusted"]:
        rows.append(("Monte Carlo error (of the sampling) per point (mean) / of the mean",
                     f"{lp['mc_error_mean']:.3g} / {lp['mc_error_of_mean']:.3g}"))
    else:
        rows.append(("Monte Carlo error", "not known: the weights of too many points have infinite variance, so the "
                                          "delta-method error understates it; use --method ais"))
    if s.get("proposal", "the guide q(z|x)") != "the guide q(z|x)":
        rows.append(("proposal", s["proposal"]))
    rows += [(f"IWAE_{b['k']}", f"{b['mean']:.3f}") for b in s["iwae"]]
    rows += [(f"ELBO, {name} ({loss}, {s['elbo']['particles']} particles)", f"{s['elbo'][name]:.3f}")
             for name, loss in ELBO_ESTIMATORS.items()]
    rows += [(f"gap log p(x) - ELBO (mean KL to the posterior): mean ± {OVER_POINTS}",
              f"{s['gap']['mean']:.3f} ± {s['gap']['std_error']:.3f}"),
             ("rate KL(q(z|x) || p(z))", f"{s['rate']:.3f}"),
             ("distortion -E_q log p(x|z)", f"{s['distortion']:.3f}"),
             ("ESS / K: mean, median, min", f"{ess['mean']:.3f}, {ess['median']:.3f}, {ess['min']:.3g}")]
    if s["pareto_khat"] is not None:
        k = s["pareto_khat"]
        rows.append(("Pareto k-hat: mean, max, share > 0.7", f"{k['mean']:.3f}, {k['max']:.3f}, {k['share_above_0.7']:.3f}"))
    rows.append((f"active units (variance of E_q[z_j] > {units['threshold']})", f"{units['count']} of {units['latent_dim']}"))
    if s["bits_per_dim"] is not None:
        rows.append(("bits per dimension", f"{s['bits_per_dim']:.4f}"))
    return rows + _reference_rows(s, "importance sampled", "is")


def _ais_rows(s: dict) -> List[Tuple[str, str]]:
    lp = s["log_marginal"]
    rows = [(f"log p(x), AIS ({s['steps']} steps, {s['chains']} chains from the {s['start']}): mean ± {OVER_POINTS}",
             f"{lp['mean']:.3f} ± {lp['std_error']:.3f}"),
            ("Monte Carlo error of the mean (over chains)", f"{lp['mc_error_of_mean']:.3g}"),
            ("spread of the chains' log-weights: mean, max", f"{s['spread']['mean']:.3f}, {s['spread']['max']:.3f}"),
            ("ESS / chains: mean, min", f"{s['ess']['mean']:.3f}, {s['ess']['min']:.3f}"),
            (f"HMC acceptance ({s['leapfrog']} leapfrog steps, target {s['target_accept']})", f"{s['accept_rate']:.3f}")]
    return rows + _reference_rows(s, "AIS", "ais")


def _bdmc_rows(s: dict) -> List[Tuple[str, str]]:
    lower, upper, gap = s["lower"], s["upper"], s["gap"]
    rows = [(f"lower bound: forward AIS ({s['steps']} steps, {s['chains']} chains)",
             f"{lower['mean']:.3f} (Monte Carlo error {lower['mc_error_of_mean']:.3g})"),
            ("upper bound: reverse AIS from the simulating z",
             f"{upper['mean']:.3f} (Monte Carlo error {upper['mc_error_of_mean']:.3g})"),
            ("gap per point: mean ± standard error, median, max",
             f"{gap['mean']:.3f} ± {gap['std_error']:.3f}, {gap['median']:.3f}, {gap['max']:.3f}"),
            ("HMC acceptance, forward / reverse",
             f"{s['accept_rate']['forward']:.3f} / {s['accept_rate']['reverse']:.3f}")]
    if s["reference"] is not None:
        ref = s["reference"]
        rows += [(f"log p(x), {ref['method']}", f"{ref['mean']:.3f}"),
                 ("share of points bracketed (within 3 standard errors)", f"{ref['share_bracketed']:.3f}")]
    return rows


def _reference_rows(s: dict, what: str, method: str) -> List[Tuple[str, str]]:
    ref = s["reference"]
    if ref is None:
        return []
    diff = ref[f"{method}_minus_reference"]
    return [(f"log p(x), {ref['method']}", f"{ref['mean']:.3f}"),
            (f"{what} - {ref['method']}: mean ± Monte Carlo error, mean |.|",
             f"{diff['mean']:.3g} ± {diff['std_error_of_mean']:.2g}, {diff['mean_abs']:.3g}")]


def _heading(s: dict) -> str:
    method = s.get("method", "is")
    if method == "is":
        return f"{s['split']} split: {points_phrase(s)}, importance sampling, K = {s['num_samples']}"
    if method == "ais":
        return f"{s['split']} split: {points_phrase(s)}, AIS, {s['steps']} steps"
    return f"{s['num_points']} points simulated from the model: BDMC, {s['steps']} steps"


def draw_figure(run_dir: Path, s: dict) -> Path:
    """``figures/bounds_vs_k_<split>.png``: the IWAE bounds of one summary against K."""
    from . import evaluation_figures  # matplotlib, loaded only to draw

    references = {f"ELBO ({name})": s["elbo"][name] for name in ELBO_ESTIMATORS}
    if s["reference"] is not None:
        references[f"log p(x), {s['reference']['method']}"] = s["reference"]["mean"]
    return evaluation_figures.bounds_vs_k([b["k"] for b in s["iwae"]], [b["mean"] for b in s["iwae"]],
                                           [b["mc_error_of_mean"] for b in s["iwae"]], references,
                                           run_dir / "figures" / f"bounds_vs_k_{s['split']}.png",
                                           f"{s['split']} split, {s['num_points']} points")


def write_evaluation_report(run_dir: Path, drawn: Optional[Sequence[dict]] = None) -> Optional[Path]:
    """The Evaluation section of ``run_dir``'s report (if the run was evaluated), against the
    checkpoint the folder holds now, with the bounds figure of each importance-sampling summary
    in ``drawn`` (default: every one of the current checkpoint; AIS and BDMC have none). Drawn
    under the folder's evaluation lock, so no evaluation saves or draws meanwhile."""
    with evaluation_lock(run_dir):
        everything = read_evaluations(run_dir)
        if not everything:
            return None
        if drawn is None:
            drawn = split_by_checkpoint(everything, current_checkpoint(run_dir))[0].values()
        for summary in drawn:
            if summary.get("method", "is") == "is":
                draw_figure(run_dir, summary)
        return write_report(run_dir, everything)


def write_report(run_dir: Path, everything: dict) -> Path:
    """The report's Evaluation section from the summaries ``everything`` (by split and method).

    Only evaluations of the checkpoint the folder holds now are shown; those of an earlier
    one (the run trained on with ``--resume``, or went on training while it was evaluated)
    are listed with the command that evaluates the new parameters, their numbers left out."""
    now = current_checkpoint(run_dir)
    current, earlier = split_by_checkpoint(everything, now)
    parts = []
    for s in current.values():
        part = f"### {_heading(s)}\n\n{markdown_table(['quantity', 'value'], _escape_pipes(summary_rows(s)))}"
        if s.get("method", "is") == "is":
            part += f"\n\n![bounds against K](figures/bounds_vs_k_{s['split']}.png)"
        parts.append(part)
    if earlier:
        parts.append(_earlier_note(run_dir, earlier.values(), now))
    files = ", ".join(f"`{s['per_point_file']}`" for s in current.values() if "per_point_file" in s)
    intro = ("Importance sampling keeps one estimate per data point. Two errors are given apart: ± is the "
             "standard error over data points (how much the mean would vary with other data points), the "
             "Monte Carlo error is that of the sampling itself (how much it would vary with other draws), "
             "trusted only where the weights' Pareto k-hat stays below 0.7. log p(x) >= IWAE_K >= ELBO. AIS "
             "anneals HMC chains from the guide to the posterior; BDMC brackets log p(x) of simulated data "
             f"between forward and reverse AIS. Full numbers: `{EVALUATION}`"
             + (f"; per data point (estimate, Monte Carlo error, ESS, k-hat): {files}" if files else "") + ".\n\n")
    return update_section(run_dir, SECTION, (intro if current else "") + "\n\n".join(parts))


def split_by_checkpoint(everything: dict, now: Optional[dict]) -> Tuple[dict, dict]:
    """The summaries of the checkpoint ``now`` (its record, or None without one), and the
    others: of an earlier checkpoint, or saved before evaluations recorded theirs."""
    def of_now(s: dict) -> bool:
        return now is not None and (s.get("checkpoint") or {}).get("sha256") == now["sha256"]

    return ({k: s for k, s in everything.items() if of_now(s)},
            {k: s for k, s in everything.items() if not of_now(s)})


def _earlier_note(run_dir: Path, summaries, now: Optional[dict]) -> str:
    """What the section leaves out, and the commands that evaluate the current parameters."""
    holds = "no checkpoint" if now is None else f"the checkpoint of epoch {now['epoch']} (sha256 {now['sha256'][:12]})"
    lines = [f"- {_heading(s)}: evaluated {_evaluated(s)}; evaluate again with `{_rerun_command(run_dir, s)}`"
             for s in summaries]
    return ("### Evaluations of an earlier checkpoint (not shown)\n\n"
            f"The run folder now holds {holds}. The evaluations below were made of other parameters: their "
            f"numbers stay in `{EVALUATION}` but are left out of this report until they are made again.\n\n"
            + "\n".join(lines))


def _evaluated(s: dict) -> str:
    """The checkpoint a summary records, in words."""
    checkpoint = s.get("checkpoint")
    if checkpoint is None:
        return "an unrecorded checkpoint (saved before evaluations recorded theirs)"
    return f"the checkpoint of epoch {checkpoint['epoch']} (sha256 {checkpoint['sha256'][:12]})"


def _rerun_command(run_dir: Path, s: dict) -> str:
    """The ``pyrovae evaluate`` command that repeats the evaluation ``s`` with its main options."""
    method = s.get("method", "is")
    options = [] if method == "is" else ["--method", method]
    if method != "bdmc":
        options += ["--split", s["split"]]
    options += ["--num-samples", s["num_samples"]] if method == "is" else ["--steps", s["steps"], "--chains", s["chains"]]
    if method == "bdmc":
        options += ["--simulated", s["num_points"]]
    subset = s.get("subset") or {}
    if subset.get("chosen") == "random":
        options += ["--max-points", s["num_points"]]
    if "gaps" in s:
        options += ["--gap-points", s["gaps"]["points"]]
    options += ["--seed", s.get("seed", subset.get("seed", 0))]  # the draws depend on it, whatever the points
    return shlex.join(["pyrovae", "evaluate", str(run_dir), *map(str, options)])


def _escape_pipes(rows):
    """Rows safe inside a markdown table (q(z|x) would otherwise split a cell)."""
    return [[cell.replace("|", "\\|") for cell in row] for row in rows]


def print_summary(s: dict) -> None:
    rows = summary_rows(s)
    width = max(len(name) for name, _ in rows)
    print(f"{_heading(s)}; nats per data point:")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
