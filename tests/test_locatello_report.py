"""docs/locatello2019/report.py: the seed-against-strength spread and the paper's findings,
read on constructed models whose answers are known."""

import types

import numpy as np
import pytest

from vaejax import config as config_lib

from run_helpers import REPO

report = config_lib.load_module(REPO / "docs" / "locatello2019" / "report.py")
METRICS = list(report.METRICS.values())


def model(method, strength, seed, value=0.0, **metrics):
    """One model whose every metric and score is `value`, unless named in `metrics`."""
    scores = {label: value for label in [*METRICS, *report.SCORES.values()]}
    return {"method": method, "strength": strength, "seed": seed, **scores, **metrics}


def test_spread_is_the_mean_seed_sd_against_the_sd_of_the_strength_means():
    models = [model("β-VAE", 1, 0, MIG=0.1), model("β-VAE", 1, 1, MIG=0.3),
              model("β-VAE", 4, 0, MIG=0.5), model("β-VAE", 4, 1, MIG=0.9),
              model("β-VAE", 8, 0, MIG=7.0),                      # one seed: no sd, left out
              model("FactorVAE", 10, 0, MIG=100.0), model("FactorVAE", 10, 1, MIG=200.0)]
    seeds, strengths = report.spread(models, "β-VAE", "MIG")
    assert seeds == pytest.approx((np.std([0.1, 0.3], ddof=1) + np.std([0.5, 0.9], ddof=1)) / 2)
    assert strengths == pytest.approx(np.std([0.2, 0.7], ddof=1))
    assert report.spread(models, "FactorVAE", "MIG") is None   # one strength
    assert report.spread(models, "DIP-VAE-I", "MIG") is None   # not trained


@pytest.mark.parametrize("verdicts, reads", [([True, True, False], "holds at this budget"),
                                             ([True, False, False], "does not hold"),
                                             ([], "cannot be judged yet")])
def test_the_seed_finding_holds_when_seeds_move_half_the_pairs_or_more(verdicts, reads):
    models = [model("β-VAE", 1, 0), model("β-VAE", 4, 0)]
    first = report._findings(models, verdicts, [], None)[0]
    assert first.startswith("- *Random seeds matter") and reads in first
    if verdicts:
        assert f"In {sum(verdicts)} of {len(verdicts)} (method, metric) pairs" in first
        assert "β-VAE: 1, 4" in first


def test_correlations_wait_for_enough_models_and_then_name_the_weak_pairs():
    models = [model("β-VAE", 1, s) for s in range(report.MIN_MODELS)]
    assert "cannot be judged yet, 10 models" in report._findings(models, [], [], None)[1]

    labels = [*METRICS, *report.SCORES.values()]
    n = len(labels)
    matrix = np.full((n, n), 0.9)
    np.fill_diagonal(matrix, 1.0)
    matrix[0, 2] = matrix[2, 0] = 0.2              # BetaVAE score against MIG: weak
    matrix[6, :6] = [0.8, 0.1, 0.6, -0.3, 0.5, np.nan]  # the ELBO against each metric
    lines = report._findings(models, [], labels, matrix)
    agree, elbo, recon = lines[1], lines[2], lines[3]
    assert "range from 0.20 to 0.90 (median 0.90); 1 of 15 pairs are below 0.5" in agree
    assert "BetaVAE score and MIG (0.20)" in agree and agree.endswith(": holds.")
    assert "test ELBO" in elbo and "above 0.5 for 2 of the 6 metrics (BetaVAE score, MIG)" in elbo
    assert "SAP" not in elbo.split(":")[1]         # no correlation for a constant metric
    assert "test −reconstruction error" in recon and "above 0.5 for 6 of the 6" in recon

    matrix[0, 2] = matrix[2, 0] = 0.9
    assert report._findings(models, [], labels, matrix)[1].endswith(": does not hold.")


def test_a_method_wins_only_with_three_models_and_a_rival():
    two = [model("β-VAE", 1, s, 1.0) for s in range(3)] + [model("FactorVAE", 10, s) for s in range(2)]
    assert "cannot be judged yet, fewer than two methods" in report._findings(two, [], [], None)[-1]

    one_wins = two + [model("FactorVAE", 10, 2)]
    last = report._findings(one_wins, [], [], None)[-1]
    assert "MIG β-VAE" in last and last.endswith(
        "does not hold among the 2 methods trained so far, at only part of their strengths "
        "(β-VAE at 1; FactorVAE at 10), so not yet across each method's range.")
    # with every strength of the study trained, the finding stands without that caveat
    full = [model(method, strength, s, 1.0 if method == "β-VAE" else 0.5)
            for method, key in (("β-VAE", "beta_vae"), ("FactorVAE", "factor_vae"))
            for strength in report.STUDY.STRENGTHS[key][2] for s in range(3)]
    last = report._findings(full, [], [], None)[-1]
    assert last.endswith("does not hold among the 2 methods trained (β-VAE, FactorVAE).")

    split = one_wins + [model("FactorVAE", 100, 0, 0.0, SAP=9.0)]
    last = report._findings(split, [], [], None)[-1]
    assert "SAP FactorVAE" in last and ": holds among the 2 methods" in last


def test_the_scoring_split_is_each_metrics_median_share_of_the_timed_models():
    timed = lambda **seconds: {"record": types.SimpleNamespace(  # noqa: E731
        results={"disentanglement_metric_time": seconds})}
    untimed = {"record": types.SimpleNamespace(results={})}
    assert report._scoring_split([untimed]) == ""
    split = report._scoring_split([untimed, timed(dci=30.0, mig=10.0), timed(dci=10.0, mig=10.0)])
    assert split == (" Each metric's share of it (median of the 2 models that time it): "
                     "dci 62%, mig 38%.")
