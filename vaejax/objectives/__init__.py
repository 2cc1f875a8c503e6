"""Objectives: per-example evidence bounds (`bounds`), KL-weight schedules (`schedules`) and
the batch-level training objectives that configs name (`training`)."""
from vaejax.objectives.bounds import LIKELIHOODS
from vaejax.objectives.bounds import batch_elbo
from vaejax.objectives.bounds import batch_iwae_bound
from vaejax.objectives.bounds import elbo
from vaejax.objectives.bounds import iwae_bound
from vaejax.objectives.bounds import iwae_log_weights
from vaejax.objectives.bounds import log_likelihood_fn
from vaejax.objectives.schedules import SCHEDULES
from vaejax.objectives.schedules import beta_schedule
from vaejax.objectives.schedules import constant_beta
from vaejax.objectives.schedules import cyclical_beta
from vaejax.objectives.schedules import linear_warmup_beta
from vaejax.objectives.training import IWAE
from vaejax.objectives.training import ELBO
from vaejax.objectives.training import OBJECTIVES
from vaejax.objectives.training import model_functions
