"""The course's claims that are formulas: chapter 1's identity log p(x) - ELBO = KL on the
conjugate model, chapter 2's measured gradient variances against their exact values, and
chapter 9's gradients of one Bernoulli latent against their closed forms.
The tests call the same functions the chapters' scripts draw their figures and tables from."""

import json
import math
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "course"))

import ch1_elbo  # noqa: E402
import ch2_gradients  # noqa: E402
import ch4_amortized_inference as ch4  # noqa: E402
import ch9_discrete_latents as ch9  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def test_chapter1_gap_is_the_kl_divergence_to_the_posterior():
    mu, sigma = torch.meshgrid(torch.linspace(-3, 4, 71, dtype=torch.float64),
                               torch.linspace(0.05, 3, 60, dtype=torch.float64), indexing="xy")
    for x, noise in [(1.5, 0.8), (-2.0, 0.3), (4.0, 2.0)]:
        log_px, elbo, kl = ch1_elbo.identity_terms(x, noise, mu, sigma)
        assert log_px.item() == pytest.approx(-0.5 * math.log(2 * math.pi * (1 + noise ** 2))
                                              - x ** 2 / (2 * (1 + noise ** 2)), abs=1e-12)
        assert (log_px - elbo - kl).abs().max().item() < 1e-6
        assert (kl >= 0).all()


def test_chapter1_elbo_is_largest_at_the_posterior_and_equals_log_px_there():
    x, noise = ch1_elbo.X, ch1_elbo.NOISE
    post_mean, post_sd = x / (1 + noise ** 2), noise / math.sqrt(1 + noise ** 2)
    at = torch.tensor([post_mean], dtype=torch.float64)
    log_px, elbo, kl = ch1_elbo.identity_terms(x, noise, at, torch.tensor([post_sd], dtype=torch.float64))
    assert elbo.item() == pytest.approx(log_px.item(), abs=1e-12)
    assert kl.item() == pytest.approx(0.0, abs=1e-12)
    nearby = torch.tensor([post_mean + 0.01, post_mean - 0.01, post_mean], dtype=torch.float64)
    _, other, _ = ch1_elbo.identity_terms(x, noise, nearby, torch.tensor([post_sd, post_sd, post_sd * 1.01]).double())
    assert (other < elbo).all()


@pytest.mark.parametrize("mu, sigma", [(-0.5, 1.0), (1.5, 0.3), (2.0, 0.62)])
def test_chapter1_pyro_trace_elbo_agrees_with_the_closed_form(mu, sigma):
    torch.manual_seed(0)
    estimate, error = ch1_elbo.pyro_elbo(ch1_elbo.X, ch1_elbo.NOISE, mu, sigma, 2000, 20)
    _, elbo, _ = ch1_elbo.identity_terms(ch1_elbo.X, ch1_elbo.NOISE, torch.tensor([mu], dtype=torch.float64),
                                         torch.tensor([sigma], dtype=torch.float64))
    assert abs(estimate - elbo.item()) < 3 * error


@pytest.mark.parametrize("name", ["pathwise", "stl", "score"])
def test_chapter2_closed_forms_equal_exact_quadrature(name):
    for x, m, s, baseline in [(1.0, 0.3, 0.6, 0.0), (-0.5, 1.0, 1.3, -2.0), (2.0, 1.0, 0.5 ** 0.5, 0.7)]:
        variance, _ = ch2_gradients.exact_moments(name, x, m, s, baseline)
        assert variance == pytest.approx(ch2_gradients.closed_form_variance(name, x, m, s, baseline), rel=1e-10)


def test_chapter2_stl_has_no_variance_at_the_posterior():
    x = 1.3
    variance, _ = ch2_gradients.exact_moments("stl", x, x / 2, 0.5 ** 0.5)
    assert variance == pytest.approx(0.0, abs=1e-20)


def test_chapter2_leave_one_out_quadrature_matches_simulation():
    """The quadrature is exact; a million simulated draws agree with it to their error."""
    x, m, s, k = ch2_gradients.X, ch2_gradients.M, ch2_gradients.S, 5
    variance, fourth = ch2_gradients.exact_moments("score_loo", x, m, s, 0.0, k)
    eps = torch.randn(1_000_000, k, generator=torch.Generator().manual_seed(0), dtype=torch.float64).numpy()
    draws = ch2_gradients.draw("score_loo", eps, x, m, s)
    assert abs(draws.var() - variance) < 3 * math.sqrt((fourth - variance ** 2) / len(draws))


@pytest.mark.parametrize("label", ch2_gradients.TOY_ESTIMATORS)
def test_chapter2_measured_variance_is_within_three_standard_errors_of_the_exact_one(label):
    row = ch2_gradients.toy_table(blocks=10, draws=200, labels=[label])[0]
    assert abs(row["z"]) < 3, row


# The machinery that keeps the pages honest: claims asserted at the settings a chapter ran at,
# the quick build's mark on figures, and the build's dependency tracking.

import argparse  # noqa: E402
import ast  # noqa: E402
import importlib.util  # noqa: E402
import re  # noqa: E402

import _course  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _args(tmp_path, quick):
    return argparse.Namespace(out=tmp_path, quick=quick)


def _tiny_2d_vae(guide: str):
    from pyrovae.model import VAE
    from pyrovae.spec import load_config

    torch.manual_seed(0)
    spec = load_config("quickstart", ["model.latent_dim=2", f"model.guide.name={guide}", "model.encoder.hidden=[16]",
                                      "model.decoder.hidden=[16]"])
    return VAE.from_config(spec, (1, 28, 28), 0)


def test_chapter4_draws_the_flow_guide_with_its_own_density_which_integrates_to_one():
    from pyrovae.evaluation.posterior import FlowMembers, guide_gaussians

    vae = _tiny_2d_vae("iaf")
    x = torch.bernoulli(torch.full((2, 1, 28, 28), 0.3), generator=torch.Generator().manual_seed(1))
    q = guide_gaussians(vae, x)
    assert isinstance(q, FlowMembers)
    z, log_q = q.draw(torch.randn(5, 2, 2, dtype=torch.float64))
    axis = torch.linspace(-10, 10, 401, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1)
    for i in range(2):  # at the flow's draws: the log q its change of variables gives them
        assert torch.allclose(ch4.member_log_density(q, i, z[:, i]), log_q[:, i], atol=1e-4)
        mass = ch4.member_log_density(q, i, grid).exp().sum() * (axis[1] - axis[0]) ** 2
        assert abs(mass.item() - 1) < 2e-3


def test_chapter4_fits_the_flow_guide_to_a_fixed_decoder():
    vae = _tiny_2d_vae("iaf")
    x = torch.bernoulli(torch.full((200, 1, 28, 28), 0.3), generator=torch.Generator().manual_seed(1))

    def elbo():
        with torch.no_grad():
            q = vae.posterior(x)
            z = q.sample((100,))
            w = vae.log_joint_of(x)(z) - q.log_prob(z)
        return w.mean().item(), (w.mean(0).std() / math.sqrt(x.shape[0])).item()

    before, start = elbo(), {k: v.detach().clone() for k, v in vae.named_parameters()}
    ch4.fit_guide(vae, x, epochs=5, batch_size=20)
    after = elbo()
    for name, value in vae.named_parameters():  # the encoder and the flow learn, nothing else moves
        assert torch.equal(value, start[name]) != name.startswith(ch4.GUIDE_PARTS), name
    assert after[0] - before[0] > 3 * math.hypot(before[1], after[1]), (before, after)


def test_chapter4_says_one_epoch():
    assert ch4.plural(1, "epoch") == "1 epoch" and ch4.plural(10, "epoch") == "10 epochs"


def test_chapter9_one_latent_gradients_equal_their_closed_forms():
    phi = torch.linspace(-3, 3, 61, dtype=torch.float64)
    p, t = torch.sigmoid(phi), ch9.T
    grads = ch9.one_latent_gradients(phi)
    assert torch.allclose(grads["exact"], p * (1 - p) * (1 - 2 * t), rtol=1e-12)  # sigma'(phi) (f(1) - f(0))
    assert torch.allclose(grads["straight-through"], p * (1 - p) * 2 * (p - t), rtol=1e-12)  # sigma'(phi) E f'(z)
    assert torch.equal(grads["pathwise"], torch.zeros_like(phi))
    wrong = grads["exact"] * grads["straight-through"] < 0
    assert torch.equal(wrong, p < t)


@pytest.mark.parametrize("phi", [-2.0, 0.0, 2.0])
def test_chapter9_score_function_mean_is_within_four_standard_errors_of_the_exact_gradient(phi):
    mean, se = ch9.score_check(phi, 20000, seed=1)
    exact = ch9.one_latent_gradients(torch.tensor([phi], dtype=torch.float64))["exact"].item()
    assert abs(mean - exact) < 4 * se


def test_a_claim_that_holds_is_written_as_its_text(tmp_path):
    claims = _course.Claims(_args(tmp_path, quick=False))
    assert claims.check("c", True, "It holds.", "measured 1")
    assert (tmp_path / "claim_c.md").read_text() == "It holds.\n"


def test_a_full_only_claim_that_fails_in_a_quick_run_is_replaced_by_a_note(tmp_path):
    claims = _course.Claims(_args(tmp_path, quick=True))
    assert not claims.check("c", False, "It holds at 1.23.", "measured 0.5", full_only=True, general="It holds.")
    note = (tmp_path / "claim_c.md").read_text()
    assert note.startswith('\n!!! warning "Not shown at the quick build')
    assert "*It holds.*" in note and "measured 0.5" in note and "1.23" not in note
    _course.finish(_args(tmp_path, quick=True), claims)
    assert json.loads((tmp_path / "claims.json").read_text())[0]["holds"] is False


@pytest.mark.parametrize("quick, full_only", [(False, True), (False, False), (True, False)])
def test_a_claim_that_fails_where_it_must_hold_fails_the_script(tmp_path, quick, full_only):
    with pytest.raises(AssertionError, match="claim 'c' does not hold"):
        _course.Claims(_args(tmp_path, quick=quick)).check("c", False, "It holds.", "measured 0", full_only=full_only)


def test_quick_figures_carry_a_visible_band_and_a_text_chunk(tmp_path):
    from PIL import Image

    fig, ax = _course.plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [0, 1])
    path = _course.save(fig, tmp_path, "f")
    height = Image.open(path).height
    _course.finish(_args(tmp_path, quick=True))
    marked = Image.open(path)
    assert marked.text.get(_course.QUICK_KEY) == "quick"
    assert marked.height > height
    red = marked.convert("RGB").getpixel((marked.width - 2, 2))
    assert red[0] > 150 and red[1] < 80 and red[2] < 80


def _claim_names(script: Path):
    return re.findall(r'claims\.check\(\s*"(\w+)"', script.read_text())


@pytest.mark.parametrize("script", sorted((ROOT / "examples" / "course").glob("ch*.py")), ids=lambda p: p.stem)
def test_every_claim_a_chapter_checks_is_shown_on_its_page(script):
    page = next((ROOT / "docs" / "course").glob(f"{script.stem[2]}_*.md")).read_text()
    for name in _claim_names(script):
        assert f'--8<-- "{script.stem}/claim_{name}.md"' in page, f"{script.stem}: claim {name} not on the page"
    if script.stem != "ch3_pyro_program":
        assert _claim_names(script), f"{script.stem} checks no claim"


def _site_hooks():
    spec = importlib.util.spec_from_file_location("site_hooks", ROOT / "docs_tools" / "site_hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    return hooks


CHAPTERS = sorted((ROOT / "examples" / "course").glob("ch*.py"))


def test_every_chapter_has_its_place_in_the_build_order():
    """The build starts the chapters in CHAPTER_ORDER; one missing from it would start last."""
    hooks = _site_hooks()
    chapters = [script.stem.split("_")[0] for script in CHAPTERS]
    assert len(chapters) >= 9 and "ch9" in chapters
    assert sorted(hooks.CHAPTER_ORDER) == sorted(chapters), "CHAPTER_ORDER must list every chapter once"
    order = [script.stem.split("_")[0] for script in hooks.figure_scripts() if script.parent.name == "course"]
    assert order == list(hooks.CHAPTER_ORDER)
    assert order.index("ch4") < min(order.index("ch5"), order.index("ch6"))  # they load chapter 4's model


def test_a_chapter_is_rebuilt_only_when_a_module_it_imports_changes():
    hooks = _site_hooks()
    course = ROOT / "examples" / "course"
    ch1 = {p.relative_to(ROOT).as_posix() for p in hooks.dependencies(course / "ch1_elbo.py")}
    ch5 = {p.relative_to(ROOT).as_posix() for p in hooks.dependencies(course / "ch5_bounds.py")}
    assert {"examples/course/ch1_elbo.py", "examples/course/_course.py", "pyrovae/evaluation/references.py"} <= ch1
    assert {"examples/course/ch4_amortized_inference.py", "pyrovae/evaluation/ais.py",
            "pyrovae/evaluation/posterior.py"} <= ch5
    assert "pyrovae/evaluation/ais.py" not in ch1
    assert "examples/course/ch4_amortized_inference.py" not in ch1


# Every chapter as a notebook, made from its script (docs_tools/notebooks.py).

NOTEBOOK_PACKAGES = ("jupytext", "nbclient", "nbformat", "ipykernel")
MISSING_NOTEBOOK = [n for n in NOTEBOOK_PACKAGES if importlib.util.find_spec(n) is None]
needs_notebooks = pytest.mark.skipif(bool(MISSING_NOTEBOOK), reason=f"{', '.join(MISSING_NOTEBOOK)} missing: "
                                     "python3 -m pip install -e '.[docs]'")


def _notebooks_module():
    spec = importlib.util.spec_from_file_location("notebooks", ROOT / "docs_tools" / "notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_notebooks
@pytest.mark.parametrize("script", CHAPTERS, ids=lambda p: p.stem)
def test_every_chapter_notebook_holds_the_whole_script_and_runs_it(script):
    import nbformat

    nb = nbformat.reads(_notebooks_module().notebook_text(script), as_version=4)
    nbformat.validate(nb)
    code = [cell.source for cell in nb.cells if cell.cell_type == "code"]
    assert nb.cells[0].cell_type == "markdown" and script.name in nb.cells[0].source
    assert "examples" in code[0] and "PYROVAE_ROOT" in code[0]
    assert code[-2].strip() == "chapter = main()"
    for source in code:
        ast.parse(source)
    source = script.read_text()
    for node in ast.parse(source).body:  # every definition of the script is in the notebook
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            assert any(f"def {node.name}(" in c or f"class {node.name}" in c for c in code), node.name


@pytest.fixture(scope="module")
def notebook_cache(tmp_path_factory):
    """The model cache the notebooks share. Where a quick site build was just made
    (``PYROVAE_SITE_DIR``, as CI does before the tests) it is that build's, so the notebooks
    load the models its chapters trained instead of training them again (every cell still
    runs); otherwise a fresh one, shared by the chapters as in a build."""
    if os.environ.get("PYROVAE_SITE_DIR"):
        return Path(os.environ.get("PYROVAE_COURSE_CACHE", ROOT / ".cache" / "course"))
    return tmp_path_factory.mktemp("course-cache")


def _execute(script, tmp_path, monkeypatch, cache):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("PYROVAE_ROOT", str(ROOT))
    monkeypatch.setenv("PYROVAE_COURSE_QUICK", "1")
    monkeypatch.setenv("PYROVAE_COURSE_CACHE", str(cache))
    nb = nbformat.reads(_notebooks_module().notebook_text(script), as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    return nb, tmp_path / "runs" / "course" / script.stem


@needs_notebooks
@pytest.mark.parametrize("script", CHAPTERS, ids=lambda p: p.stem)
def test_every_chapter_notebook_executes_and_makes_what_its_page_shows(script, tmp_path, monkeypatch, notebook_cache):
    """Each chapter's notebook, executed at quick settings in a fresh kernel, draws every figure
    and writes every number and claim its page includes, checks the chapter's claims, and
    displays what it made."""
    nb, out = _execute(script, tmp_path, monkeypatch, notebook_cache)
    page = next((ROOT / "docs" / "course").glob(f"{script.stem[2]}_*.md")).read_text()
    figures = set(re.findall(rf"\.\./generated/{script.stem}/([\w.-]+\.png)", page))
    snippets = set(re.findall(rf'--8<-- "{script.stem}/([\w.-]+\.md)"', page))
    made, written = {p.name for p in out.glob("*.png")}, {p.name for p in out.glob("*.md")}
    assert figures and figures <= made, f"figures the page shows that the notebook did not draw: {figures - made}"
    assert snippets and snippets <= written, f"snippets the page includes that the notebook did not write: {snippets - written}"
    claims = json.loads((out / "claims.json").read_text())
    assert {claim["name"] for claim in claims} <= set(_claim_names(script))
    assert all(claim["holds"] or claim["full_only"] for claim in claims)
    assert all(f"claim_{claim['name']}.md" in written for claim in claims)
    outputs = [o for cell in nb.cells for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    shown = [o for o in outputs if o.output_type == "display_data"]
    assert sum("image/png" in o.data for o in shown) == len(made)
    assert sum("text/markdown" in o.data for o in shown) == len(written)
