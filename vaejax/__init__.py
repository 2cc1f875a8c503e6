"""vaejax: variational autoencoders in JAX. The pure core: distributions, objectives, models."""
from vaejax.distributions import bernoulli_log_prob
from vaejax.distributions import diag_gaussian_log_prob
from vaejax.distributions import diag_gaussian_sample
from vaejax.distributions import gaussian_log_prob
from vaejax.distributions import kl_diag_gaussians
from vaejax.distributions import kl_to_standard_normal
from vaejax.distributions import kl_to_standard_normal_per_dim
from vaejax.distributions import standard_normal_log_prob
from vaejax.objectives import batch_elbo
from vaejax.objectives import batch_iwae_bound
from vaejax.objectives import beta_schedule
from vaejax.objectives import constant_beta
from vaejax.objectives import cyclical_beta
from vaejax.objectives import elbo
from vaejax.objectives import iwae_bound
from vaejax.objectives import iwae_log_weights
from vaejax.objectives import linear_warmup_beta
from vaejax.objectives import log_likelihood_fn
from vaejax.models import VAE
from vaejax.models import make_vae

__all__ = [
    "bernoulli_log_prob",
    "diag_gaussian_log_prob",
    "diag_gaussian_sample",
    "gaussian_log_prob",
    "kl_diag_gaussians",
    "kl_to_standard_normal",
    "kl_to_standard_normal_per_dim",
    "standard_normal_log_prob",
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
    "VAE",
    "make_vae",
]
