"""Disentanglement metrics on codes whose answer is known: codes equal to the factors (a
perfectly disentangled, complete code), codes that mix factors, codes that repeat one
factor, and noise; the pieces against independent computations (scikit-learn's mutual
information, entropies by hand)."""

import numpy as np
import pytest
import sklearn.metrics

from vaejax import disentanglement as dis

SIZES = (3, 6, 8)  # a small factor grid: shape, scale, position


def factors(n, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, s, n) for s in SIZES], axis=1)


def rotate(f, seed=1):
    """Every code a mixture of every factor: entangled, but as informative."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(len(SIZES), len(SIZES))))
    return f.astype(float) @ q


def test_mutual_information_equals_sklearn_on_integer_labels():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 2000), rng.integers(0, 7, 2000)
    b = np.where(rng.random(2000) < 0.5, a, b)
    assert dis.mutual_information(a, b) == pytest.approx(sklearn.metrics.mutual_info_score(a, b), rel=1e-9)
    f = factors(5000)
    np.testing.assert_allclose(dis.entropy(f), np.log(SIZES), rtol=0.01)  # near-uniform factors


def test_mig_is_one_for_the_factors_themselves_and_near_zero_for_noise():
    f = factors(5000)
    assert dis.mig(f.astype(float), f) > 0.97
    noise = np.random.default_rng(2).normal(size=(5000, 3))
    assert dis.mig(noise, f) < 0.02
    repeated = np.concatenate([f, f[:, :1]], axis=1).astype(float)  # two codes hold factor 0
    assert 0.6 < dis.mig(repeated, f) < 0.67  # factor 0's gap is 0: about two thirds remain


def test_dci_of_importance_matrices_with_known_answers():
    assert dis.dci_from_importance(np.eye(3)) == pytest.approx({"disentanglement": 1.0, "completeness": 1.0}, abs=1e-6)
    uniform = dis.dci_from_importance(np.ones((3, 3)))
    assert uniform == pytest.approx({"disentanglement": 0.0, "completeness": 0.0}, abs=1e-6)
    # one code explains every factor: complete per factor, not disentangled
    one = dis.dci_from_importance(np.array([[1.0, 1.0, 1.0], [0, 0, 0], [0, 0, 0]]))
    assert one["disentanglement"] == pytest.approx(0.0, abs=1e-6)
    assert one["completeness"] == pytest.approx(1.0, abs=1e-6)


def test_dci_ranks_the_factors_above_their_rotation():
    f, f_test = factors(1500), factors(500, seed=3)
    exact = dis.dci(f.astype(float), f, f_test.astype(float), f_test)
    mixed = dis.dci(rotate(f), f, rotate(f_test), f_test)
    assert exact["disentanglement"] > 0.9 and exact["completeness"] > 0.9
    assert exact["informativeness_test"] > 0.99
    assert mixed["disentanglement"] < exact["disentanglement"] - 0.2


def test_sap_and_modularity_explicitness():
    f, f_test = factors(1500), factors(500, seed=3)
    codes = f.astype(float)
    exact = dis.sap(codes, f, f_test.astype(float), f_test)
    # one scalar code and a linear SVM tell few of 6 or 8 classes apart: SAP of even the
    # factors themselves is well below 1 for such factors, but above any mixture of them
    assert exact > 0.3 and dis.sap(rotate(f), f, rotate(f_test), f_test) < exact - 0.1
    repeated = np.concatenate([codes, codes[:, :1]], axis=1)
    repeated_test = np.concatenate([f_test, f_test[:, :1]], axis=1).astype(float)
    assert dis.sap(repeated, f, repeated_test, f_test) < dis.sap(codes, f, f_test.astype(float), f_test)
    scores = dis.modularity_explicitness(codes, f, f_test.astype(float), f_test)
    assert scores["modularity"] > 0.99 and scores["explicitness_test"] > 0.9
    assert dis.modularity(np.array([[1.0, 1.0], [2.0, 0.0]])) == pytest.approx(0.5)
    assert dis.modularity_explicitness(rotate(f), f, rotate(f_test), f_test)["modularity"] < 0.9


def test_beta_vae_and_factor_vae_scores():
    rng = np.random.default_rng(5)

    def exact(fs):
        return fs.astype(float) + 0.01 * rng.normal(size=fs.shape)

    def collapsed(fs):  # factor 2 is not encoded at all; a constant dimension instead
        return np.concatenate([fs[:, :2].astype(float), np.zeros((len(fs), 1))], axis=1) \
            + 0.01 * rng.normal(size=fs.shape)

    settings = dict(batch_size=32, num_train=300, num_eval=200)
    assert dis.beta_vae_score(exact, SIZES, **settings)["eval_accuracy"] > 0.95
    assert dis.factor_vae_score(exact, SIZES, num_variance_estimate=2000, **settings) == pytest.approx(
        {"train_accuracy": 1.0, "eval_accuracy": 1.0, "num_active_dims": 3})
    lost = dis.factor_vae_score(collapsed, SIZES, num_variance_estimate=2000, **settings)
    assert lost["num_active_dims"] == 2 and lost["eval_accuracy"] < 0.8  # factor 2 cannot win a vote
    clean = lambda fs: fs.astype(float)  # noqa: E731  (deterministic codes: the seed decides)
    assert dis.beta_vae_score(clean, SIZES, seed=7, **settings) == dis.beta_vae_score(
        clean, SIZES, seed=7, **settings)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="factors must be integer"):
        dis.mig(np.zeros((10, 2)), np.zeros((10, 2)))
    with pytest.raises(ValueError, match="the same N"):
        dis.mig(np.zeros((10, 2)), np.zeros((9, 2), int))


def test_rank_correlation_is_spearmans_with_ties_at_their_average_rank():
    """A monotone map of a column correlates 1, its reverse -1; ties get their average rank,
    checked against the Pearson correlation of hand-ranked columns; a constant column is NaN."""
    x = np.array([3.0, 1.0, 2.0, 5.0, 4.0])
    scores = np.stack([x, np.exp(x), -x, [1, 1, 2, 3, 3], np.ones(5)], axis=1)
    r = dis.rank_correlation(scores)
    np.testing.assert_allclose(r[0, 1], 1.0)
    np.testing.assert_allclose(r[0, 2], -1.0)
    ranks_x, ranks_tied = np.array([3, 1, 2, 5, 4.0]), np.array([1.5, 1.5, 3, 4.5, 4.5])
    np.testing.assert_allclose(r[0, 3], np.corrcoef(ranks_x, ranks_tied)[0, 1])
    assert np.isnan(r[0, 4]) and np.allclose(np.diag(r)[:4], 1.0)
    with pytest.raises(ValueError, match="N >= 2"):
        dis.rank_correlation(np.ones((1, 3)))
