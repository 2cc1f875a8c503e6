"""vaejax: variational autoencoders in JAX.

The pure core: distributions, evidence bounds and their batch helpers, KL schedules, and
models as plug-ins; `load_run` gives back a trained run as (model, params, config).
"""
from vaejax import _compat

_compat.restore_tfp_alias()  # before anyone imports distrax (see vaejax/_compat.py)

from vaejax.distributions import Bernoulli  # noqa: E402
from vaejax.distributions import DiagGaussian  # noqa: E402
from vaejax.distributions import StandardNormal  # noqa: E402
from vaejax.distributions import bernoulli_log_prob  # noqa: E402
from vaejax.distributions import diag_gaussian_log_prob  # noqa: E402
from vaejax.distributions import diag_gaussian_sample  # noqa: E402
from vaejax.distributions import gaussian_log_prob  # noqa: E402
from vaejax.distributions import kl_closed_form  # noqa: E402
from vaejax.distributions import kl_diag_gaussians  # noqa: E402
from vaejax.distributions import kl_diag_gaussians_per_dim  # noqa: E402
from vaejax.distributions import kl_to_standard_normal  # noqa: E402
from vaejax.distributions import kl_to_standard_normal_per_dim  # noqa: E402
from vaejax.distributions import marginal_log_prob  # noqa: E402
from vaejax.distributions import standard_normal_log_prob  # noqa: E402
from vaejax.objectives import OBJECTIVES  # noqa: E402
from vaejax.objectives import GRADIENT_ESTIMATORS  # noqa: E402
from vaejax.objectives import batch_ciwae_bound  # noqa: E402
from vaejax.objectives import batch_miwae_bound  # noqa: E402
from vaejax.objectives import batch_reweighted_wake_sleep  # noqa: E402
from vaejax.objectives import batch_tcvae  # noqa: E402
from vaejax.objectives import ciwae_bound  # noqa: E402
from vaejax.objectives import miwae_bound  # noqa: E402
from vaejax.objectives import reweighted_wake_sleep  # noqa: E402
from vaejax.objectives import stop_gradient_parameters  # noqa: E402
from vaejax.objectives import batch_elbo  # noqa: E402
from vaejax.objectives import batch_iwae_bound  # noqa: E402
from vaejax.objectives import beta_schedule  # noqa: E402
from vaejax.objectives import constant_beta  # noqa: E402
from vaejax.objectives import cyclical_beta  # noqa: E402
from vaejax.objectives import elbo  # noqa: E402
from vaejax.objectives import iwae_bound  # noqa: E402
from vaejax.objectives import iwae_log_weights  # noqa: E402
from vaejax.objectives import linear_warmup_beta  # noqa: E402
from vaejax.objectives import log_likelihood_fn  # noqa: E402
from vaejax.ais import ais_log_prob  # noqa: E402
from vaejax.ais import batch_ais_log_prob  # noqa: E402
from vaejax.ais import bdmc  # noqa: E402
from vaejax.inference_gap import optimize_local_posterior  # noqa: E402
from vaejax.inference_gap import split_gap  # noqa: E402
from vaejax.models import MODELS  # noqa: E402
from vaejax.models import EncoderDecoderVAE  # noqa: E402


def load_run(workdir, **kwargs):
    """`model, params, config = vaejax.load_run(workdir)`: see `vaejax.runs.load_run`."""
    from vaejax.runs import load_run as load  # noqa: PLC0415  (the runtime loads lazily)

    return load(workdir, **kwargs)


__all__ = [
    "ais_log_prob",
    "batch_ais_log_prob",
    "bdmc",
    "optimize_local_posterior",
    "split_gap",
    "Bernoulli",
    "DiagGaussian",
    "StandardNormal",
    "bernoulli_log_prob",
    "diag_gaussian_log_prob",
    "diag_gaussian_sample",
    "gaussian_log_prob",
    "kl_closed_form",
    "kl_diag_gaussians",
    "kl_diag_gaussians_per_dim",
    "kl_to_standard_normal",
    "kl_to_standard_normal_per_dim",
    "marginal_log_prob",
    "standard_normal_log_prob",
    "OBJECTIVES",
    "GRADIENT_ESTIMATORS",
    "batch_ciwae_bound",
    "batch_miwae_bound",
    "batch_reweighted_wake_sleep",
    "batch_tcvae",
    "ciwae_bound",
    "miwae_bound",
    "reweighted_wake_sleep",
    "stop_gradient_parameters",
    "batch_elbo",
    "batch_iwae_bound",
    "beta_schedule",
    "constant_beta",
    "cyclical_beta",
    "elbo",
    "iwae_bound",
    "iwae_log_weights",
    "linear_warmup_beta",
    "log_likelihood_fn",
    "MODELS",
    "EncoderDecoderVAE",
    "load_run",
]
