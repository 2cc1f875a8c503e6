"""Optimizers and learning-rate schedules that `config.optimizer` names.

The training step applies the learning rate itself (`lr = learning_rate * shape(step)`), so
that sweeps can vmap over the peak rate: an optimizer here is the update *direction*
(clipping, Adam's moments, weight decay) and a schedule is the rate's shape in [0, 1]:
`schedule(opt, total_steps, steps_per_epoch)` -> a function of the step.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from vaejax import registry

OPTIMIZERS = registry.Registry("optimizer", "optimizer.name")
LR_SCHEDULES = registry.Registry("learning-rate schedule", "optimizer.schedule")


@OPTIMIZERS.register("adam")
def adam(opt) -> optax.GradientTransformation:
    """Adam's direction (b1, b2, eps), after optional global-norm clipping."""
    return optax.chain(*_clipping(opt), optax.scale_by_adam(b1=opt.b1, b2=opt.b2, eps=opt.eps))


@OPTIMIZERS.register("adamw")
def adamw(opt) -> optax.GradientTransformation:
    """Adam's direction plus decoupled weight decay (`optimizer.weight_decay`)."""
    return optax.chain(*_clipping(opt), optax.scale_by_adam(b1=opt.b1, b2=opt.b2, eps=opt.eps),
                       optax.add_decayed_weights(opt.weight_decay))


def _clipping(opt) -> list[optax.GradientTransformation]:
    return [optax.clip_by_global_norm(opt.grad_clip_norm)] if opt.grad_clip_norm > 0 else []


@LR_SCHEDULES.register("constant")
def constant(opt, total_steps: int, steps_per_epoch: int) -> Callable[[jax.Array], jax.Array]:
    del opt, total_steps, steps_per_epoch
    return lambda step: jnp.ones((), jnp.float32)


@LR_SCHEDULES.register("cosine")
def cosine(opt, total_steps: int, steps_per_epoch: int):
    del opt, steps_per_epoch
    return optax.cosine_decay_schedule(1.0, max(total_steps, 1))


@LR_SCHEDULES.register("warmup_cosine")
def warmup_cosine(opt, total_steps: int, steps_per_epoch: int):
    del steps_per_epoch
    return optax.warmup_cosine_decay_schedule(0.0, 1.0, opt.warmup_steps, max(total_steps, 1))


@LR_SCHEDULES.register("burda")
def burda(opt, total_steps: int, steps_per_epoch: int):
    """Burda et al. (2015), sec. 5: stage i lasts 3^i epochs at 10^(-i/7) of the peak rate.

    Stages 0..7 are the paper's (3^8 - 1) / 2 = 3280 epochs; a longer run stays in stage 8, 9, ...
    Stage i starts at epoch (3^i - 1) / 2.
    """
    del opt, total_steps
    starts = jnp.asarray([(3 ** i - 1) // 2 for i in range(1, 20)], jnp.int32)
    def shape(step):
        epoch = step // max(steps_per_epoch, 1)
        stage = jnp.sum(epoch >= starts)
        return jnp.power(10.0, -stage.astype(jnp.float32) / 7.0)
    return shape


def direction(opt) -> optax.GradientTransformation:
    """The optimizer `opt.name` names, without its learning rate."""
    return OPTIMIZERS.get(opt.name)(opt)


def lr_shape(opt, total_steps: int, steps_per_epoch: int) -> Callable[[jax.Array], jax.Array]:
    """The learning-rate schedule divided by its peak: a function of the step, in [0, 1]."""
    return LR_SCHEDULES.get(opt.schedule)(opt, total_steps, steps_per_epoch)
