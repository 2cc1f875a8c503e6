"""Optimizers and learning-rate schedules that `config.optimizer` names.

The training step applies the learning rate itself (`lr = learning_rate * shape(step)`), so
that sweeps can vmap over the peak rate: an optimizer here is the update *direction*
(clipping, Adam's moments, weight decay) and a schedule is the rate's shape in [0, 1]:
`schedule(total_steps, steps_per_epoch, **settings)` -> a function of the step.

Each reads the `config.optimizer` settings its signature names (keyword-only, with defaults);
a setting that neither the chosen optimizer nor the chosen schedule reads is refused unless it
holds its neutral value (`registry.refuse_unread`). Your own: `optimizer.name =
"my_module:my_optimizer"`, a function of its settings returning an optax transformation.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from vaejax import registry

# Read by the program itself, whichever optimizer and schedule are chosen.
PROGRAM_SETTINGS = ("name", "schedule", "learning_rate", "skip_grad_norm")

OPTIMIZERS = registry.Registry(
    "optimizer", "optimizer.name",
    neutral=dict(b1=0.9, b2=0.999, eps=1e-8, grad_clip_norm=0.0, weight_decay=0.0))
LR_SCHEDULES = registry.Registry("learning-rate schedule", "optimizer.schedule",
                                 neutral=dict(warmup_steps=0),
                                 supplied=("total_steps", "steps_per_epoch"))


@OPTIMIZERS.register("adam")
def adam(*, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
         grad_clip_norm: float = 0.0) -> optax.GradientTransformation:
    """Adam's direction (b1, b2, eps), after global-norm clipping at `grad_clip_norm` (0: none)."""
    return optax.chain(*_clipping(grad_clip_norm), optax.scale_by_adam(b1=b1, b2=b2, eps=eps))


@OPTIMIZERS.register("adamw")
def adamw(*, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, grad_clip_norm: float = 0.0,
          weight_decay: float = 0.0) -> optax.GradientTransformation:
    """Adam's direction plus decoupled weight decay (`weight_decay` per unit learning rate)."""
    return optax.chain(*_clipping(grad_clip_norm), optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
                       optax.add_decayed_weights(weight_decay))


def _clipping(grad_clip_norm: float) -> list[optax.GradientTransformation]:
    return [optax.clip_by_global_norm(grad_clip_norm)] if grad_clip_norm > 0 else []


@LR_SCHEDULES.register("constant")
def constant(total_steps: int, steps_per_epoch: int) -> Callable[[jax.Array], jax.Array]:
    del total_steps, steps_per_epoch
    return lambda step: jnp.ones((), jnp.float32)


@LR_SCHEDULES.register("cosine")
def cosine(total_steps: int, steps_per_epoch: int):
    del steps_per_epoch
    return optax.cosine_decay_schedule(1.0, max(total_steps, 1))


@LR_SCHEDULES.register("warmup_cosine")
def warmup_cosine(total_steps: int, steps_per_epoch: int, *, warmup_steps: int = 0):
    """0 at step 0, rising linearly to 1 at `warmup_steps`, then a cosine decay to 0."""
    del steps_per_epoch
    return optax.warmup_cosine_decay_schedule(0.0, 1.0, warmup_steps, max(total_steps, 1))


@LR_SCHEDULES.register("burda")
def burda(total_steps: int, steps_per_epoch: int):
    """Burda et al. (2015), sec. 5: stage i lasts 3^i epochs at 10^(-i/7) of the peak rate.

    Stages 0..7 are the paper's (3^8 - 1) / 2 = 3280 epochs; a longer run stays in stage 8, 9, ...
    Stage i starts at epoch (3^i - 1) / 2.
    """
    del total_steps
    starts = jnp.asarray([(3 ** i - 1) // 2 for i in range(1, 20)], jnp.int32)
    def shape(step):
        epoch = step // max(steps_per_epoch, 1)
        stage = jnp.sum(epoch >= starts)
        return jnp.power(10.0, -stage.astype(jnp.float32) / 7.0)
    return shape


def direction(opt, *, search_path: str | None = None) -> optax.GradientTransformation:
    """The optimizer `opt.name` names (`opt`: config.optimizer), without its learning rate."""
    return _call(OPTIMIZERS, opt.name, opt, search_path)


def lr_shape(opt, total_steps: int, steps_per_epoch: int, *,
             search_path: str | None = None) -> Callable[[jax.Array], jax.Array]:
    """The learning-rate schedule divided by its peak: a function of the step, in [0, 1]."""
    return _call(LR_SCHEDULES, opt.schedule, opt, search_path, total_steps=total_steps,
                 steps_per_epoch=steps_per_epoch)


def _call(reg: registry.Registry, name: str, opt, search_path, **supplied):
    """The entry `name` of `reg`, called with the `opt` settings it reads and `supplied`."""
    fn = reg.get(name, search_path=search_path)
    reads = reg.settings(name, search_path=search_path)
    settings = {k: v for k, v in dict(opt).items() if reads is None or k in reads}
    settings = {k: v for k, v in settings.items() if k not in PROGRAM_SETTINGS}
    return registry.call_with_fields(fn, settings, what=f"{reg.field}={name!r}", **supplied)
