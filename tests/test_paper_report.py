"""The paper's recorded results: ``benchmarks/paper/report.py`` draws Fig. 2 and Fig. 3 and
their tables from a results folder, with the code ``pyrovae reproduce`` draws them with."""

import json
import math
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from pyrovae.reports.paper_results import read_results, thin, write_results
from pyrovae.sweeps.spec import builtin_sweeps, load_sweep

REPO = Path(__file__).resolve().parents[1]
REPORT = REPO / "benchmarks" / "paper" / "report.py"
DPI = 110  # paper_figures._save
TRAINING_SPLIT = {"binarized_mnist": 50_000, "frey_faces": 1565}  # training points of the full split


def _curve(points, **values):
    return {"epochs": list(range(1, len(points) + 1)), "points": points, **values, "seconds": [1.5 * p for p in points]}


def _fig2():
    aevb = _curve([100, 200, 300, 400], train=[-150.0, -120.0, -110.0, -105.0], heldout=[-151.0, -121.0, -112.0, -108.0])
    wake_sleep = _curve([100, 200, 300], train=[-190.0, -170.0, -160.0], heldout=[-191.0, -171.0, -163.0])
    frey = _curve([50, 100], train=[700.0, 800.0], heldout=[690.0, 780.0])
    return {"figure": "kingma2014-fig2", "panels": {"MNIST, $N_z$ = 3": {"pathwise": aevb, "wake_sleep": wake_sleep},
                                                    "Frey Face, $N_z$ = 2": {"pathwise": frey}}}


def _fig3():
    curve = _curve([1000, 2000], test=[-170.0, -165.5], std_error=[2.0, float("nan")])
    comparison = {"method": "mcem", "epoch": 2, "points": 30}
    for split, base in (("train", -150.0), ("test", -165.0)):
        for offset, name in enumerate(("is", "appendix_d", "ais")):
            comparison[f"{split}_{name}"], comparison[f"{split}_{name}_se"] = base + offset, 0.5
    return {"figure": "kingma2014-fig3", "panels": {"N_train = 1000": {"mcem": curve}}, "comparison": [comparison]}


def _png_size(path: Path):
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def _table(path: Path):
    lines = path.read_text().strip().splitlines()
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def test_report_draws_each_figure_and_table_from_the_folder_it_is_given(tmp_path):
    results, out = tmp_path / "results", tmp_path / "out"
    write_results(results, _fig2())
    write_results(results, _fig3())
    done = subprocess.run([sys.executable, str(REPORT), "--results", str(results), "--out", str(out)],
                          capture_output=True, text=True, env={"PYTHONPATH": str(REPO), "MPLBACKEND": "Agg", "PATH": ""})
    assert done.returncode == 0, done.stderr
    # Fig. 2 has two panels side by side (3.6 x 3.0 inches each, 0.5 for the title), Fig. 3 one (4.2 wide).
    assert _png_size(out / "kingma2014-fig2.png") == (round(2 * 3.6 * DPI), round(3.5 * DPI))
    assert _png_size(out / "kingma2014-fig3.png") == (round(4.2 * DPI), round(3.5 * DPI))

    curves = _table(out / "kingma2014-fig2-curves.md")
    assert curves[0] == ["MNIST, N_z = 3", "AEVB", "400", "-105.00", "-108.00", "-108.00 (400)", "600 s"]
    assert [row[:3] for row in curves[1:]] == [["MNIST, N_z = 3", "wake-sleep", "300"], ["Frey Face, N_z = 2", "AEVB", "100"]]
    # Both methods at the furthest point both reached (300), only on panels that have both.
    assert _table(out / "kingma2014-fig2-common.md") == [
        ["MNIST, N_z = 3", "300", "-110.00", "-112.00", "-160.00", "-163.00", "+51.00"]]

    fig3 = _table(out / "kingma2014-fig3-curves.md")
    assert fig3 == [["N_train = 1000", "MCEM", "2e+03", "-165.50 ± nan", "3000 s"]]
    assert _table(out / "kingma2014-fig3-comparison.md") == [
        ["MCEM", "2", "train (30 points)", "-150.00 ± 0.50", "-149.00 ± 0.50", "-148.00 ± 0.50"],
        ["MCEM", "2", "test (30 points)", "-165.00 ± 0.50", "-164.00 ± 0.50", "-163.00 ± 0.50"]]


def test_a_missing_record_is_a_one_line_error(tmp_path):
    done = subprocess.run([sys.executable, str(REPORT), "--results", str(tmp_path), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, env={"PYTHONPATH": str(REPO), "PATH": ""})
    assert done.returncode != 0
    assert done.stderr.strip().count("\n") == 0 and "--record" in done.stderr


def test_recorded_curves_are_thinned_evenly_in_log_points_keeping_both_ends(tmp_path):
    points = list(range(10, 100_001, 10))  # 10^4 epochs, linear in points
    curve = _curve(points, train=[float(p) for p in points], heldout=[float(-p) for p in points])
    curve["settings"] = {"lr": 0.02}
    small = thin(curve, max_points=40)
    assert small["points"][0] == 10 and small["points"][-1] == 100_000 and len(small["points"]) <= 40
    assert small["settings"] == {"lr": 0.02}
    assert all(small["train"][i] == small["points"][i] for i in range(len(small["points"])))  # columns stay aligned
    decades = [sum(10 ** d <= p < 10 ** (d + 1) for p in small["points"]) for d in (1, 2, 3, 4)]
    assert min(decades) >= 5, decades  # every decade drawn, not only the last (where 90% of epochs are)
    write_results(tmp_path, {"figure": "kingma2014-fig2", "panels": {"p": {"pathwise": curve}}})
    record = json.loads((tmp_path / "kingma2014-fig2.json").read_text())
    assert len(record["panels"]["p"]["pathwise"]["points"]) <= 150
    write_results(tmp_path, _fig3())  # a NaN standard error is recorded as null (JSON has no NaN) and read back as NaN
    stored = json.loads((tmp_path / "kingma2014-fig3.json").read_text())
    assert stored["panels"]["N_train = 1000"]["mcem"]["std_error"] == [2.0, None]
    assert math.isnan(read_results(tmp_path, "kingma2014-fig3")["panels"]["N_train = 1000"]["mcem"]["std_error"][1])


@pytest.mark.slow
def test_recorded_results_draw_the_tables_reproduce_wrote(tmp_path):
    """A small Fig. 2 reproduction, recorded, then drawn by report.py: the same tables."""
    from pyrovae.commands.reproduce import record, reproduce

    out = tmp_path / "fig2"
    small = ["train.epochs=2", "data.train_size=200", "model.encoder.hidden=[8]", "model.decoder.hidden=[8]"]
    text = reproduce("kingma2014-fig2", out, overrides=small, only=["model.latent_dim=2"], workers=1,
                     log=lambda _: None).read_text()
    results = tmp_path / "results"
    record("kingma2014-fig2", out, results)
    write_results(results, _fig3())  # report.py draws both figures
    done = subprocess.run([sys.executable, str(REPORT), "--results", str(results), "--out", str(tmp_path / "drawn")],
                          capture_output=True, text=True, env={"PYTHONPATH": str(REPO), "MPLBACKEND": "Agg", "PATH": ""})
    assert done.returncode == 0, done.stderr
    for table in ("curves", "common"):
        drawn = (tmp_path / "drawn" / f"kingma2014-fig2-{table}.md").read_text().strip()
        assert drawn in text
    assert "| Frey Face, N_z = 2 | AEVB | 400 |" in text


@pytest.mark.slow
def test_the_estimator_comparison_is_cached_per_epoch_and_settings(tmp_path, monkeypatch):
    """Fig. 3's appendix-D / IS / AIS comparison of a run is computed once for its epoch and
    settings, and again when the settings change."""
    from pyrovae import load_config
    from pyrovae.commands.reproduce import COMPARISON, MARGINALS, compare_marginals
    from pyrovae.training.train import train

    spec = load_config("mnist_aevb", ["data.train_size=100", "model.latent_dim=2", "model.encoder.hidden=[8]",
                                      "model.decoder.hidden=[8]", "train.epochs=1", "train.progress=false",
                                      "train.device=cpu"])
    train(spec, tmp_path / "run")
    monkeypatch.setitem(COMPARISON, "is_samples", 20)
    for key, value in (("appendix_d_samples", 20), ("appendix_d_warmup", 5), ("ais_steps", 10), ("ais_chains", 2)):
        monkeypatch.setitem(COMPARISON, key, value)
    first = compare_marginals(tmp_path / "run", points=3)
    assert first["epoch"] == 1 and first["points"] == 3
    for split in ("train", "test"):
        for name in ("is", "appendix_d", "ais"):
            assert math.isfinite(first[f"{split}_{name}"]) and first[f"{split}_{name}_se"] > 0
    stamp = (tmp_path / "run" / MARGINALS).stat().st_mtime_ns
    assert compare_marginals(tmp_path / "run", points=3) == first
    assert (tmp_path / "run" / MARGINALS).stat().st_mtime_ns == stamp  # not recomputed
    monkeypatch.setitem(COMPARISON, "ais_steps", 12)
    assert compare_marginals(tmp_path / "run", points=3)["settings"]["ais_steps"] == 12


def test_fig3_error_bars_are_one_standard_error_either_side():
    """The page says the curves carry plus and minus one standard error: the drawn bars do."""
    from pyrovae.reports.paper_figures import draw_figure_3

    curve = _curve([1000, 2000, 4000], test=[-170.0, -165.5, -160.0], std_error=[2.0, 0.5, float("nan")])
    fig = draw_figure_3({"N_train = 1000": {"mcem": curve}})
    (bars,) = fig.axes[0].containers
    segments = bars.lines[2][0].get_segments()  # one vertical segment per point: (x, low), (x, high)
    assert [(s[0][1], s[1][1]) for s in segments] == [(-172.0, -168.0), (-166.0, -165.0), (-160.0, -160.0)]


def test_fig2_y_range_holds_every_curve_and_marks_a_far_first_running_mean():
    """Early epochs are not cut off (AEVB N_z = 200's held-out bound starts at -315 on MNIST);
    only a first-epoch running train mean far below everything is drawn on the edge, labelled,
    while one that is merely lowest (wake-sleep's -330 here) sets the lower limit."""
    from pyrovae.reports.paper_figures import draw_figure_2

    points = [50_000 * e for e in range(1, 21)]
    aevb = _curve(points, train=[-16422.0, -281.0] + [-150.0] * 18, heldout=[-315.0, -260.0] + [-145.0] * 18)
    wake_sleep = _curve(points, train=[-330.0] + [-176.0] * 19, heldout=[-186.0] + [-176.0] * 19)
    fig = draw_figure_2({"MNIST, $N_z$ = 200": {"pathwise": aevb, "wake_sleep": wake_sleep}})
    ax = fig.axes[0]
    low, high = ax.get_ylim()
    assert -330.0 - 20 < low < -330.0 and -145.0 < high < -145.0 + 20  # every point but one, and no more
    for line in ax.get_lines()[:4]:  # the four curves as drawn
        values = [v for v in line.get_ydata() if v != -16422.0]
        assert low <= min(values) and max(values) <= high
    assert [t.get_text() for t in ax.texts] == ["-16422"]
    assert ax.get_lines()[4].get_ydata()[0] == low  # its marker on the lower edge


@pytest.mark.parametrize("sweep", [name for name in builtin_sweeps() if name.startswith("kingma2014-")])
def test_every_paper_run_follows_the_papers_optimization_protocol(sweep):
    """Sec. 5: Adagrad, every parameter drawn from N(0, 0.01), and a N(0, I) prior on the
    parameters: weight decay M / N per minibatch gradient for the run's own training set
    (0.1 for the 1000 digits of Fig. 3's small set, not the 50000-digit 0.002)."""
    for run in load_sweep(sweep).runs():
        data, model, train = run.config["data"], run.config["model"], run.config["train"]
        size = data.get("train_size") or TRAINING_SPLIT[data["name"]]
        assert train["optimizer"]["name"] == "adagrad", run.folder
        assert train["optimizer"]["weight_decay"] == pytest.approx(train["batch_size"] / size, rel=1e-3), run.folder
        assert model["encoder"]["init_std"] == model["decoder"]["init_std"] == 0.01, run.folder
