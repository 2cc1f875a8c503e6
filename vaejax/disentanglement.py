"""Disentanglement metrics: pure functions of codes and ground-truth factors.

    from vaejax import disentanglement as dis
    dis.mig(codes, factors)                                  # codes: float [N, L]; factors: int [N, F]
    dis.dci(codes, factors, codes_test, factors_test)        # disentanglement, completeness, informativeness
    dis.sap(codes, factors, codes_test, factors_test)
    dis.modularity_explicitness(codes, factors, codes_test, factors_test)
    dis.beta_vae_score(codes_of, factor_sizes, seed=0)       # codes_of: factors [B, F] -> codes [B, L]
    dis.factor_vae_score(codes_of, factor_sizes, seed=0)
    dis.rank_correlation(scores)                             # scores: [models, metrics]

The definitions are disentanglement_lib's (`evaluation/metrics/`, Locatello et al. 2019), written
here in NumPy with scikit-learn's classifiers where those use them:

- MIG (Chen et al. 2018): each code dimension discretised into `num_bins` equal-width bins over
  its range; MI(code_i; factor_j) from the contingency table; per factor, the gap between the
  two most informative codes over the factor's entropy; averaged over factors. The mutual
  information is computed here from counts, not by `sklearn.metrics.mutual_info_score`, whose
  handling of float labels changed (disentanglement_lib issue 33); it equals that function
  on integer labels.
- SAP (Kumar et al. 2018): per (code, factor), the test accuracy of a linear SVM (C = 0.01,
  balanced classes) from that code alone (discrete factors), or R² (continuous); per factor,
  the difference of the two best codes; averaged.
- DCI (Eastwood & Williams 2018): a gradient-boosted classifier per factor from all codes;
  the importance matrix R [L, F] from its feature importances; disentanglement = Σ_i ρ_i
  (1 − H_F(R_i·)), completeness = Σ_j ρ_j (1 − H_L(R_·j)) (entropies in base F and L, ρ the
  normalised importance of each code or factor); informativeness = mean accuracy.
- Modularity and explicitness (Ridgeway & Zemel 2018): from the MI matrix, 1 − the squared
  MI off each code's best factor relative to the best, averaged over codes; explicitness:
  mean ROC-AUC of a one-vs-rest logistic regression per factor from all (standardised) codes.
- BetaVAE score (Higgins et al. 2017) and FactorVAE score (Kim & Mnih 2018): sample batches
  with one factor fixed; BetaVAE classifies the fixed factor from the mean |z1 − z2| of pairs
  (logistic regression, accuracy); FactorVAE votes the code of least variance (relative to the
  global variance, dimensions of zero variance pruned) and scores the majority vote.

Randomness comes only from `seed` (a NumPy generator), so a score is a function of its
inputs. Scores are in [0, 1]; MI and entropies in nats.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

NUM_BINS = 20  # disentanglement_lib's default for MIG and modularity


def _check(codes, factors) -> tuple[np.ndarray, np.ndarray]:
    codes, factors = np.asarray(codes, np.float64), np.asarray(factors)
    if codes.ndim != 2 or factors.ndim != 2 or codes.shape[0] != factors.shape[0]:
        raise ValueError(f"codes must be [N, L] and factors [N, F] with the same N; got "
                         f"{codes.shape} and {factors.shape}.")
    if not np.issubdtype(factors.dtype, np.integer):
        raise ValueError(f"factors must be integer class indices [N, F], got {factors.dtype}.")
    return codes, factors


def discretize(codes, num_bins: int = NUM_BINS) -> np.ndarray:
    """Each column of `codes` [N, L] as bin indices of `num_bins` equal-width bins over its
    range: int [N, L] (disentanglement_lib's histogram discretizer)."""
    codes = np.asarray(codes, np.float64)
    out = np.zeros(codes.shape, np.int64)
    for i in range(codes.shape[1]):
        edges = np.histogram(codes[:, i], num_bins)[1][:-1]
        out[:, i] = np.digitize(codes[:, i], edges)
    return out


def mutual_information(a, b) -> float:
    """MI of two integer label vectors [N] in nats, from their contingency table."""
    _, a = np.unique(a, return_inverse=True)
    _, b = np.unique(b, return_inverse=True)
    joint = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(joint, (a, b), 1.0)
    joint /= joint.sum()
    pa, pb = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    return float(np.sum(joint[nz] * np.log(joint[nz] / (pa @ pb)[nz])))


def mutual_info_matrix(discrete_codes, factors) -> np.ndarray:
    """MI(code_i; factor_j) in nats, [L, F]."""
    return np.array([[mutual_information(discrete_codes[:, i], factors[:, j])
                      for j in range(factors.shape[1])] for i in range(discrete_codes.shape[1])])


def entropy(factors) -> np.ndarray:
    """H(factor_j) in nats, [F]."""
    return np.array([mutual_information(factors[:, j], factors[:, j])
                     for j in range(factors.shape[1])])


def mig(codes, factors, *, num_bins: int = NUM_BINS) -> float:
    """Mutual information gap, in [0, 1]."""
    codes, factors = _check(codes, factors)
    m = mutual_info_matrix(discretize(codes, num_bins), factors)
    if m.shape[0] < 2:
        raise ValueError("MIG needs at least two code dimensions.")
    top = np.sort(m, axis=0)[::-1]
    return float(np.mean((top[0] - top[1]) / entropy(factors)))


def sap(codes, factors, codes_test, factors_test, *, continuous_factors: bool = False) -> float:
    """Separated attribute predictability, in [0, 1]."""
    from sklearn.svm import LinearSVC  # noqa: PLC0415

    codes, factors = _check(codes, factors)
    codes_test, factors_test = _check(codes_test, factors_test)
    score = np.zeros((codes.shape[1], factors.shape[1]))
    for i in range(codes.shape[1]):
        for j in range(factors.shape[1]):
            if continuous_factors:
                cov = np.cov(codes[:, i], factors[:, j], ddof=1)
                score[i, j] = cov[0, 1] ** 2 / (cov[0, 0] * cov[1, 1]) if cov[0, 0] > 1e-12 else 0.0
            else:
                svm = LinearSVC(C=0.01, class_weight="balanced")
                svm.fit(codes[:, i:i + 1], factors[:, j])
                score[i, j] = np.mean(svm.predict(codes_test[:, i:i + 1]) == factors_test[:, j])
    top = np.sort(score, axis=0)
    return float(np.mean(top[-1] - top[-2]))


def _entropy_rows(p, base) -> np.ndarray:
    """Entropy of each row of the non-negative [R, C] in base `base` (rows normalised)."""
    p = p + 1e-11
    p = p / p.sum(axis=1, keepdims=True)
    return -np.sum(p * np.log(p), axis=1) / np.log(base)


def dci_from_importance(importance) -> dict:
    """Disentanglement and completeness of an importance matrix R [L, F] (non-negative)."""
    importance = np.asarray(importance, np.float64)
    codes, factors = importance.shape
    weights = importance if importance.sum() > 0 else np.ones_like(importance)
    d = float(np.sum((1 - _entropy_rows(importance, factors)) * weights.sum(1) / weights.sum()))
    c = float(np.sum((1 - _entropy_rows(importance.T, codes)) * weights.sum(0) / weights.sum()))
    return {"disentanglement": d, "completeness": c}


def dci(codes, factors, codes_test, factors_test, *, seed: int = 0) -> dict:
    """{"disentanglement", "completeness", "informativeness_train", "informativeness_test"}:
    the importance matrix from one gradient-boosted classifier per factor."""
    from sklearn.ensemble import GradientBoostingClassifier  # noqa: PLC0415

    codes, factors = _check(codes, factors)
    codes_test, factors_test = _check(codes_test, factors_test)
    importance = np.zeros((codes.shape[1], factors.shape[1]))
    train, test = [], []
    for j in range(factors.shape[1]):
        model = GradientBoostingClassifier(random_state=seed).fit(codes, factors[:, j])
        importance[:, j] = np.abs(model.feature_importances_)
        train.append(np.mean(model.predict(codes) == factors[:, j]))
        test.append(np.mean(model.predict(codes_test) == factors_test[:, j]))
    return dci_from_importance(importance) | {"informativeness_train": float(np.mean(train)),
                                              "informativeness_test": float(np.mean(test))}


def modularity(mi) -> float:
    """Modularity of a mutual-information matrix [L, F]: 1 − Σ_{j ≠ best} MI² / (MI_best² (F − 1))
    per code, 0 for a code with no information, averaged over codes."""
    squared = np.square(np.asarray(mi, np.float64))
    best = squared.max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = 1.0 - (squared.sum(axis=1) - best) / (best * (squared.shape[1] - 1.0))
    return float(np.mean(np.where(best == 0, 0.0, score)))


def modularity_explicitness(codes, factors, codes_test, factors_test, *,
                            num_bins: int = NUM_BINS) -> dict:
    """{"modularity", "explicitness_train", "explicitness_test"}."""
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415
    from sklearn.metrics import roc_auc_score  # noqa: PLC0415
    from sklearn.preprocessing import label_binarize  # noqa: PLC0415

    codes, factors = _check(codes, factors)
    codes_test, factors_test = _check(codes_test, factors_test)
    out = {"modularity": modularity(mutual_info_matrix(discretize(codes, num_bins), factors))}
    mean, std = codes.mean(0), codes.std(0)
    std = np.where(std > 0, std, 1.0)
    x, x_test = (codes - mean) / std, (codes_test - mean) / std
    auc_train, auc_test = [], []
    for j in range(factors.shape[1]):
        classes = np.unique(factors[:, j])
        model = LogisticRegression(max_iter=1000).fit(x, factors[:, j])
        for data, y, out_list in ((x, factors[:, j], auc_train), (x_test, factors_test[:, j], auc_test)):
            truth = label_binarize(y, classes=classes)
            if len(classes) == 2:
                truth = np.hstack([1 - truth, truth])
            out_list.append(roc_auc_score(truth, model.predict_proba(data)))
    return out | {"explicitness_train": float(np.mean(auc_train)),
                  "explicitness_test": float(np.mean(auc_test))}


def _sample_factors(rng, factor_sizes, n) -> np.ndarray:
    return np.stack([rng.integers(0, size, n) for size in factor_sizes], axis=1)


def beta_vae_score(codes_of: Callable, factor_sizes: Sequence[int], *, seed: int = 0,
                   batch_size: int = 64, num_train: int = 10_000, num_eval: int = 5_000) -> dict:
    """{"train_accuracy", "eval_accuracy"} of a logistic regression that tells which factor was
    held fixed from the mean |codes(f1) − codes(f2)| over `batch_size` pairs sharing it.
    `codes_of(factors int [B, F]) -> codes [B, L]` renders and encodes; it is called once per
    set of points, on all their batches together (B = n * batch_size), so an encoder runs
    on large batches."""
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415

    rng = np.random.default_rng(seed)

    def points(n):
        labels = rng.integers(0, len(factor_sizes), n)
        first, second = [], []
        for k in labels:
            f1, f2 = _sample_factors(rng, factor_sizes, batch_size), _sample_factors(rng, factor_sizes, batch_size)
            f2[:, k] = f1[:, k]
            first.append(f1)
            second.append(f2)
        codes = [np.asarray(codes_of(np.concatenate(f))).reshape(n, batch_size, -1)
                 for f in (first, second)]
        return np.mean(np.abs(codes[0] - codes[1]), axis=1), labels

    x, y = points(num_train)
    model = LogisticRegression(max_iter=1000).fit(x, y)
    x_eval, y_eval = points(num_eval)
    return {"train_accuracy": float(model.score(x, y)), "eval_accuracy": float(model.score(x_eval, y_eval))}


def factor_vae_score(codes_of: Callable, factor_sizes: Sequence[int], *, seed: int = 0,
                     batch_size: int = 64, num_train: int = 10_000, num_eval: int = 5_000,
                     num_variance_estimate: int = 10_000, prune_threshold: float = 0.05) -> dict:
    """{"train_accuracy", "eval_accuracy", "num_active_dims"}: the majority-vote classifier
    from (fixed factor, code of least relative variance) votes. Code dimensions whose global
    standard deviation is below `prune_threshold` (collapsed to the prior) never get a vote
    (Locatello et al.'s setting, 0.05). disentanglement_lib takes the argmin among the
    active dimensions and uses it as an index of all of them; here the vote goes to the
    dimension itself (the same when no dimension is pruned). `codes_of` as for
    `beta_vae_score`: called on all of a set's batches at once."""
    rng = np.random.default_rng(seed)
    global_var = np.var(np.asarray(codes_of(_sample_factors(rng, factor_sizes, num_variance_estimate))),
                        axis=0, ddof=1)
    active = np.sqrt(global_var) >= prune_threshold
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}

    def votes(n):
        fixed, batches = [], []
        for _ in range(n):
            k = rng.integers(0, len(factor_sizes))
            f = _sample_factors(rng, factor_sizes, batch_size)
            f[:, k] = f[0, k]
            fixed.append(k)
            batches.append(f)
        codes = np.asarray(codes_of(np.concatenate(batches))).reshape(n, batch_size, -1)
        local = np.var(codes, axis=1, ddof=1)  # (n, L)
        ratio = np.where(active, local / np.where(active, global_var, 1.0), np.inf)
        table = np.zeros((len(factor_sizes), global_var.shape[0]), np.int64)
        np.add.at(table, (np.asarray(fixed), np.argmin(ratio, axis=1)), 1)
        return table

    train = votes(num_train)
    classifier = np.argmax(train, axis=0)  # each code dimension's majority factor
    columns = np.arange(train.shape[1])

    def accuracy(table):
        return float(table[classifier, columns].sum() / table.sum())

    return {"train_accuracy": accuracy(train), "eval_accuracy": accuracy(votes(num_eval)),
            "num_active_dims": int(active.sum())}


def rank_correlation(scores) -> np.ndarray:
    """Spearman's rank correlation between the columns of `scores` [N, M] (N models, M
    metrics): the Pearson correlation of their ranks, tied values at their average rank, as
    Locatello et al. compare the metrics. Returns [M, M], ones on the diagonal; a column
    that is constant has no ranks to correlate (NaN)."""
    scores = np.asarray(scores, np.float64)
    if scores.ndim != 2 or scores.shape[0] < 2:
        raise ValueError(f"rank_correlation takes scores [N >= 2, M], got shape {scores.shape}")
    ranks = np.stack([_average_ranks(column) for column in scores.T], axis=1)
    centred = ranks - ranks.mean(axis=0)
    norms = np.sqrt((centred ** 2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (centred.T @ centred) / np.outer(norms, norms)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..N, ties sharing their average rank."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks
