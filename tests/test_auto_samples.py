"""samples auto (LIME, Kernel SHAP) and masks auto (RISE): the stopping rule, its errors, the interfaces."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from explain_cli.engines import build_params, get_engine
from explain_cli.engines.lime import kernel_weights, sandwich_stderr
from explain_cli.errors import OptionError
from explain_cli.engines.surrogate import fit_linear
from tests.conftest import PixelLinear, make_linear
from tests.helpers import assert_refused, exact_contributions, make_problem


class NoisyLinear(PixelLinear):
    """The pixel-linear model plus σ·sin(10⁴·⟨x, R⟩): deterministic noise, ~uncorrelated across inputs."""

    def __init__(self, sigma: float, seed: int = 0) -> None:
        base = make_linear(k=1, seed=seed)
        super().__init__(base.weight.data.clone(), base.bias.data.clone())
        g = torch.Generator().manual_seed(seed + 100)
        self.register_buffer("r", torch.randn(1, 3, 16, 16, generator=g))
        self.sigma = sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise = torch.sin(1e4 * (x.double() * self.r.double()).sum(dim=(1, 2, 3)))
        return super().forward(x) + (self.sigma * noise).to(x.dtype)[:, None]


def run(method: str, problem, seed: int = 0, **values):
    engine = get_engine(method)
    params = build_params(engine, values)
    return engine.run(problem, params, torch.Generator().manual_seed(seed))


def noisy_problem(sigma=0.5, **kw):
    return make_problem(NoisyLinear(sigma), targets=(0,), **kw)


# the standard errors --------------------------------------------------------------------------

def test_lime_sandwich_stderr_is_calibrated_on_a_linear_model_with_known_noise():
    rng = np.random.default_rng(0)
    m, n, truth = 10, 600, np.linspace(-1, 1, 10)
    zs = []
    for _ in range(60):
        z = rng.integers(0, 2, (n, m)).astype(np.float64)
        w = kernel_weights(z, distance="cosine", width=0.5)
        noise = rng.normal(0, 0.3, n) * (0.5 + z.sum(axis=1) / m)  # heteroskedastic on purpose
        y = (z @ truth + 0.7 + noise)[:, None]
        fit = fit_linear(z, y, w, method="ridge", alpha=1e-9)
        se = sandwich_stderr(z, y, w, fit.coef, fit.intercept, alpha=1e-9, method="ridge")
        zs.append((fit.coef[0] - truth) / se[0])
    rms = float(np.sqrt(np.mean(np.square(zs))))
    assert 0.85 < rms < 1.2, rms


# the stopping rule on a model with known noise --------------------------------------------------

@pytest.mark.parametrize("method", ["lime", "kernelshap", "rise"])
def test_stops_when_converged_and_records_why(method):
    key = "masks" if method == "rise" else "samples"
    tol = 0.2 if method == "rise" else 0.05
    problem = noisy_problem()
    out = run(method, problem, **{key: "auto", "auto_tolerance": tol, "max_samples": 20_000})
    rec = out.extra["auto"]
    assert rec["stopped"] == "converged", rec
    assert rec["max_stderr_ratio"] < tol
    assert rec["evaluations"] == problem.evaluator.evaluations  # every evaluation counted, none twice
    assert rec["rounds"] >= 2 and out.stderr is not None
    spread = out.scores.max() - out.scores.min()
    assert np.all(out.stderr < tol * spread)


def test_lime_auto_scores_are_within_their_errors_of_the_truth():
    problem = noisy_problem(sigma=0.5)
    out = run("lime", problem, samples="auto", auto_tolerance=0.03, alpha=1e-9)
    truth = exact_contributions(problem.evaluator.model if hasattr(problem.evaluator, "model") else NoisyLinear(0.5),
                                problem)
    assert np.max(np.abs(out.scores - truth) / out.stderr) < 4.5


@pytest.mark.parametrize("method", ["lime", "kernelshap"])
def test_smaller_tolerance_uses_more_evaluations_and_max_samples_caps(method):
    loose = run(method, noisy_problem(3.0), samples="auto", auto_tolerance=0.1).extra["auto"]
    tight = run(method, noisy_problem(3.0), samples="auto", auto_tolerance=0.02).extra["auto"]
    assert tight["evaluations"] > loose["evaluations"]
    problem = noisy_problem()
    capped = run(method, problem, samples="auto", auto_tolerance=1e-4, max_samples=600).extra["auto"]
    assert capped["stopped"] == "max_samples"
    assert capped["evaluations"] <= 600 and problem.evaluator.evaluations <= 600
    assert capped["max_stderr_ratio"] > 1e-4


@pytest.mark.parametrize("method", ["lime", "kernelshap", "rise"])
def test_same_seed_same_numbers_whatever_the_batch_size(method):
    key = "masks" if method == "rise" else "samples"
    model = NoisyLinear(0.3).double()
    values = {key: "auto", "auto_tolerance": 0.1, "max_samples": 3000}
    runs = [run(method, make_problem(model, targets=(0,), batch_size=b, dtype=torch.float64), **values)
            for b in (16, 16, 53)]
    for other in runs[1:]:
        assert other.extra["auto"]["evaluations"] == runs[0].extra["auto"]["evaluations"]
        np.testing.assert_allclose(other.scores, runs[0].scores, rtol=1e-6, atol=1e-9)


def test_kernelshap_rounds_reuse_earlier_coalitions():
    problem = noisy_problem()
    out = run("kernelshap", problem, samples="auto", auto_tolerance=0.02)
    # the final design holds at most max(evaluations) coalitions: earlier rounds' are inside it
    assert out.extra["coalitions"] + 2 >= 0.8 * out.extra["auto"]["evaluations"]


# interfaces -------------------------------------------------------------------------------------

@pytest.mark.parametrize("method,flag", [("lime", "--samples"), ("kernelshap", "-n"), ("rise", "--masks")])
def test_cli_auto(cli, linear_script, small_image, tmp_path, method, flag):
    res = cli("run", linear_script, small_image, "-m", method, flag, "auto", "--auto-tolerance", "0.3",
              "--max-samples", "2000", "--n-segments", "8", "-o", tmp_path, "-q")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(next(tmp_path.glob("*.json")).read_text())
    rec = doc["extra"]["auto"]
    assert rec["stopped"] in ("converged", "max_samples") and 0 < rec["evaluations"] <= 2000
    assert doc["params"]["samples" if method != "rise" else "masks"] == "auto"


def test_cli_integer_samples_still_an_integer(cli, linear_script, small_image, tmp_path):
    res = cli("run", linear_script, small_image, "-m", "lime", "--samples", "50", "-o", tmp_path, "-q")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert doc["params"]["samples"] == 50 and "auto" not in doc["extra"]


@pytest.mark.parametrize("args,needle", [
    (("-m", "ablation", "--samples", "auto"), "--samples"),
    (("-m", "partition", "--samples", "auto"), "--samples"),
    (("-m", "lime", "--samples", "often"), "--samples"),
    (("-m", "lime", "--samples", "auto", "--auto-tolerance", "0"), "--auto-tolerance"),
    (("-m", "kernelshap", "--samples", "auto", "--exact"), "--exact needs 2^M"),  # auto (the default) + exact: 2^M within max_samples
])
def test_cli_refuses(cli, linear_script, small_image, tmp_path, args, needle):
    res = cli("run", linear_script, small_image, *args, "-o", tmp_path, "-q")
    assert_refused(res, needle)


def test_python_errors_name_the_option():
    from explain_cli.options.settings import settings

    with pytest.raises(OptionError) as err:
        settings({"method": "partition", "samples": "auto"})
    assert err.value.option == "samples" if hasattr(err.value, "option") else "samples" in str(err.value)
    with pytest.raises(OptionError, match="auto_tolerance"):
        settings({"method": "lime", "samples": "auto", "auto_tolerance": -1})
    assert settings({"method": "lime", "samples": "300"}).params.samples == 300


def test_help_keeps_per_method_defaults(cli):
    res = cli("run", "--help")
    text = " ".join(res.stdout.split())
    assert "auto (kernelshap)" in text and "1000" in text and "500" in text
