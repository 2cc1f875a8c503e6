"""What a config fixes for one model: the model, objective, optimizer and epoch function.

A run is a pure function of (config, seed). The seed's key is split once:

    init_key, data_key, train_key, eval_key = jax.random.split(jax.random.key(seed), 4)

`data_key` folded with the epoch orders the batches; `train_key` folded with the global
step gives that step's preprocessing (binarization) and objective noise. Nothing depends
on how many epochs ran in this process, so a resumed run equals an uninterrupted one bit
for bit.

`Program` holds what the config fixes statically; its `init_state` / `train_epoch` are pure
functions of one member's `TrainState` and hyperparameters (`hyper`: a dict of traced
scalars, see `Program.hyper`). The data are `vaejax.data.Examples`: images, and labels for
a model that conditions on them (`model.conditioning`, see `vaejax.models`). `vaejax.loop` runs them for one model, and `vaejax.sweep`
vmaps the very same functions over the members of a group.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from vaejax import data as data_lib
from vaejax import models, optimizers, registry, trackers
from vaejax.objectives import OBJECTIVES, schedules

# What a model may condition on (`model.conditioning`): the field of `Examples` it reads.
CONDITIONS = ("label",)
AUXILIARY_STREAM = 7  # fold_in tag of an objective's own model's init key (from the init key)


class TrainState(NamedTuple):
    """Everything that changes during training: a plain pytree."""

    params: Any
    opt_state: Any
    step: jax.Array  # int32 scalar: training steps taken (a skipped update counts)


class ExtendedTrainState(NamedTuple):
    """`TrainState` with what some runs keep besides, in the dict `extra`:

        "ema"                    an exponential moving average of the parameters
                                 (`train.ema_decay` > 0): ema <- decay * ema + (1 - decay) *
                                 params after every step, from the initial parameters;
        "auxiliary",             an objective's own model and its optimizer state (FactorVAE's
        "auxiliary_opt_state"    discriminator; see `has_auxiliary`).

    Only such runs use it, so every other run's checkpoints stay `TrainState`'s."""

    params: Any
    opt_state: Any
    step: jax.Array
    extra: dict


def evaluation_params(state):
    """The parameters evaluation, validation and figures use: the EMA where the run keeps one."""
    if isinstance(state, ExtendedTrainState) and "ema" in state.extra:
        return state.extra["ema"]
    return state.params


def has_auxiliary(objective) -> bool:
    """Whether `objective` trains a model of its own beside the VAE. Such an objective has
    `init_auxiliary(key, model, params, data_shape) -> auxiliary params`, an
    `auxiliary_optimizer` (an optax transformation) and `auxiliary_loss(key, x, model, params,
    auxiliary, *, condition=None) -> (loss, metrics)`, and its `__call__` takes `auxiliary=`.
    Each step, both losses are computed from the same key (so the same draws) at the same
    parameters, and each model is updated by its own optimizer."""
    return hasattr(objective, "init_auxiliary")


class RunKeys(NamedTuple):
    init: jax.Array
    data: jax.Array
    train: jax.Array
    eval: jax.Array


def run_keys(seed) -> RunKeys:
    """The four independent streams of a run, from its seed (works on a traced seed)."""
    return RunKeys(*jax.random.split(jax.random.key(seed), 4))


def search_path(config) -> str | None:
    """The experiment file's folder, where `"module:attribute"` names are imported from."""
    return config.get("experiment_dir") or None


def objective_factory(config):
    return OBJECTIVES.get(config.objective.kind, search_path=search_path(config))


def objective_scalars(factory) -> tuple[str, ...]:
    """The `config.objective` fields an objective keeps traced (none if it declares none)."""
    return tuple(getattr(factory, "scalars", ()))


def scalar_defaults(objective) -> dict[str, float]:
    """The defaults of an objective's traced scalars, from its `__call__` signature (a config
    that does not set e.g. objective.gamma gets the objective's own default)."""
    parameters = inspect.signature(objective.__call__).parameters
    return {name: p.default for name, p in parameters.items()
            if p.kind is p.KEYWORD_ONLY and p.default is not p.empty}


def _takes_step(objective) -> bool:
    return "step" in inspect.signature(objective.__call__).parameters


def vmapped_keys(config) -> tuple[str, ...]:
    """The config keys that members of one vmapped group may differ in: the seed, the peak
    learning rate and the objective's traced scalars (e.g. objective.beta)."""
    scalars = objective_scalars(objective_factory(config))
    return ("seed", "optimizer.learning_rate", *(f"objective.{s}" for s in scalars))


def check_new_run(config) -> None:
    """Refuses a setting that nothing the config selects reads, unless it holds its neutral
    value (`registry.refuse_unread`): of the objective and its beta schedule, the optimizer and
    its learning-rate schedule, and the dataset (`data.DATASETS`); and the trackers
    (`trackers.check`: known, installed, their settings read). A model's factory refuses
    the fields it does not take itself. Checked before a new run writes anything, not when a
    recorded run is loaded.
    """
    where = search_path(config)
    objective, opt = config.objective, config.optimizer
    registry.refuse_unread(
        "objective", objective, [(OBJECTIVES, objective.kind),
                                 (schedules.BETA_SCHEDULES, objective.beta_schedule)],
        always=("kind",), search_path=where)
    registry.refuse_unread("data", config.data, [(data_lib.DATASETS, config.data.name)],
                           always=data_lib.datasets.PROGRAM_SETTINGS, search_path=where)
    registry.refuse_unread(
        "optimizer", opt, [(optimizers.OPTIMIZERS, opt.name), (optimizers.LR_SCHEDULES, opt.schedule)],
        always=optimizers.PROGRAM_SETTINGS, search_path=where)
    trackers.check(config)
    from vaejax import evaluate  # noqa: PLC0415  (it imports metrics, which imports us)

    evaluate.check_settings(config.eval)


def model_conditioning(model, objective, config) -> str | None:
    """What `model` conditions on (`model.conditioning`: None or "label"), checked against
    what vaejax can hand it and against the objective, which must take `condition=`."""
    conditioning = getattr(model, "conditioning", None)
    if conditioning is None:
        return None
    if conditioning not in CONDITIONS:
        raise ValueError(f"model.kind={config.model.kind!r} has conditioning={conditioning!r}; "
                         f"vaejax hands models one of {CONDITIONS} (or None).")
    if "condition" not in inspect.signature(objective.__call__).parameters:
        raise ValueError(f"model.kind={config.model.kind!r} is conditioned on the {conditioning}, "
                         f"but objective.kind={config.objective.kind!r} takes no `condition=`: choose "
                         "an objective that does (elbo, iwae, miwae, ciwae, piwae, rws).")
    return conditioning


def build_model(config, image_shape, train=None):
    """The model `config.model` describes, for images of `image_shape` (H, W, C). `train`, the
    training split (`Examples`), gives a model that initializes from data its
    `Examples.mean_image` and `Examples.init_images`, computed only for a model that reads them."""
    return models.build(config.model, image_shape, search_path=search_path(config),
                        mean_image=None if train is None else train.mean_image,
                        init_images=None if train is None else train.init_images)


@dataclasses.dataclass(frozen=True)
class Program:
    """The static half of a run: shapes, model, objective and optimizer fixed by the config."""

    model: Any
    data_shape: tuple[int, ...]  # one x as the model reads it
    objective: Callable
    scalars: tuple[str, ...]  # the objective's traced scalars, from config.objective
    beta_schedule: Callable
    preprocessing: Callable  # (key, x_uint8) -> the model's input (`data.preprocessing_fn`)
    batch_size: int
    steps_per_epoch: int
    direction: optax.GradientTransformation
    lr_shape: Callable
    eval_batch_size: int
    conditioning: str | None = None  # "label": the model reads each example's label
    progress_every: int = 0  # steps between progress callbacks inside an epoch (0: none)
    skip_grad_norm: float = 0.0  # > 0: skip updates whose gradient norm is above it or non-finite
    ema_decay: float = 0.0  # > 0: keep an EMA of the parameters (`ExtendedTrainState`)
    # With several devices, `train` shards each batch over a mesh axis "data" (None: no
    # constraint; XLA's SPMD partitioner then all-reduces the gradients).
    batch_sharding: Any = None

    @classmethod
    def build(cls, config, image_shape, num_train: int, train=None) -> "Program":
        """`train`: the training split (`Examples`), for a model whose initialization reads
        the data (`model.output_bias = "mean_logit"`, `model.normalization = "weight_norm"`;
        `build_model`)."""
        if config.train.batch_size <= 0 or config.train.batch_size > num_train:
            raise ValueError(
                f"train.batch_size={config.train.batch_size} must be in [1, {num_train}] "
                f"(the number of training examples)."
            )
        model = build_model(config, image_shape, train)
        factory = objective_factory(config)
        scalars = objective_scalars(factory)
        static = {k: v for k, v in dict(config.objective).items() if k != "kind" and k not in scalars}
        # A batch-level objective that needs the training-set size (beta-TCVAE) names it.
        extra = ({"dataset_size": num_train}
                 if "dataset_size" in inspect.signature(factory).parameters else {})
        objective = registry.call_with_fields(
            factory, static, what=f"objective.kind={config.objective.kind!r}", only_accepted=True,
            **extra)
        conditioning = model_conditioning(model, objective, config)
        steps_per_epoch = num_train // config.train.batch_size
        return cls(
            model=model,
            data_shape=models.data_shape(model, image_shape),
            objective=objective,
            scalars=scalars,
            beta_schedule=schedules.from_config(config.objective, search_path=search_path(config)),
            preprocessing=data_lib.preprocessing_fn(config.data.preprocessing,
                                                    search_path=search_path(config)),
            batch_size=config.train.batch_size,
            steps_per_epoch=steps_per_epoch,
            direction=optimizers.direction(config.optimizer, search_path=search_path(config)),
            lr_shape=optimizers.lr_shape(config.optimizer, steps_per_epoch * config.train.epochs,
                                          steps_per_epoch, search_path=search_path(config)),
            eval_batch_size=config.eval.batch_size,
            conditioning=conditioning,
            progress_every=config.train.progress_every,
            skip_grad_norm=config.optimizer.get("skip_grad_norm", 0.0),
            ema_decay=config.train.get("ema_decay", 0.0),
        )

    def model_data(self, splits):
        """`splits` (`vaejax.data.Splits`) with what the model reads: the labels kept for a
        model conditioned on them (a clear error if the dataset has none), else dropped, so
        an unconditional model's programs do not carry them; ground-truth factors always
        dropped (metrics read them from the splits as loaded)."""
        def select(examples):
            if examples is None:
                return None
            if not self.conditioning:
                return data_lib.Examples(examples.images)
            if examples.labels is None:
                raise ValueError(f"The model conditions on labels (model.conditioning={self.conditioning!r}), "
                                 f"but the dataset ({splits.source}) has none: choose a labelled dataset "
                                 "(mnist, fashion_mnist, cifar10) or an unconditional model.")
            return data_lib.Examples(examples.images, examples.labels)  # never the factors

        return dataclasses.replace(splits, train=select(splits.train),
                                   validation=select(splits.validation), test=select(splits.test))

    def hyper(self, config) -> dict[str, jax.Array]:
        """The traced scalars of one member: seed, peak learning rate, objective scalars."""
        hyper = {"seed": jnp.asarray(config.seed, jnp.int32),
                 "learning_rate": jnp.asarray(config.optimizer.learning_rate, jnp.float32)}
        defaults = scalar_defaults(self.objective)
        for name in self.scalars:
            if name not in config.objective and name not in defaults:
                raise ValueError(f"objective.kind={config.objective.kind!r} needs config.objective.{name} "
                                 "(a traced scalar without a default): set it in the config")
            hyper[name] = jnp.asarray(config.objective.get(name, defaults.get(name)), jnp.float32)
        return hyper

    # -- pure functions of one member ---------------------------------------------------

    def init_state(self, hyper) -> TrainState | ExtendedTrainState:
        init_key = run_keys(hyper["seed"]).init
        params = self.model.init(init_key)
        extra = {}
        if self.ema_decay > 0:
            extra["ema"] = params
        if has_auxiliary(self.objective):
            auxiliary = self.objective.init_auxiliary(jax.random.fold_in(init_key, AUXILIARY_STREAM),
                                                      self.model, params, self.data_shape)
            extra |= {"auxiliary": auxiliary,
                      "auxiliary_opt_state": self.objective.auxiliary_optimizer.init(auxiliary)}
        state = TrainState(params, self.direction.init(params), jnp.zeros((), jnp.int32))
        return ExtendedTrainState(*state, extra=extra) if extra else state

    def abstract_state(self) -> TrainState | ExtendedTrainState:
        """The shapes and dtypes of a state: what a checkpoint is restored into. Needs neither
        data nor a compiled program."""
        return jax.eval_shape(self.init_state, {"seed": jnp.zeros((), jnp.int32)})

    def scalars_at(self, hyper, step) -> dict[str, jax.Array]:
        """The objective's scalars at `step` (`beta` follows the beta schedule)."""
        values = {name: hyper[name] for name in self.scalars}
        if "beta" in values:
            values["beta"] = self.beta_schedule(step, beta=values["beta"])
        return values

    def inputs(self, key, x_uint8):
        """Preprocessed examples in the model's shape: (B,) + data_shape, float32."""
        x = data_lib.preprocess(key, x_uint8, kind=self.preprocessing)
        return x.reshape((x.shape[0],) + self.data_shape)

    def condition(self, examples):
        """The objective's `condition=` for a batch of `Examples`: {} for an unconditional model,
        else {"condition": the labels (B,)}."""
        return {"condition": examples.labels} if self.conditioning else {}

    def train_step(self, state: TrainState, hyper, batch, keys: RunKeys):
        """One optimizer step on `batch`: `Examples` of (B, H, W, C) uint8 images (and labels
        (B,) for a conditional model), or the images alone."""
        batch = data_lib.as_examples(batch)
        step_key = jax.random.fold_in(keys.train, state.step)
        preprocess_key, noise_key = jax.random.split(step_key)
        x = self.inputs(preprocess_key, batch.images)
        if self.batch_sharding is not None:
            x = jax.lax.with_sharding_constraint(x, self.batch_sharding)
        scalars = self.scalars_at(hyper, state.step)
        condition = self.condition(batch)

        # An objective whose weights follow the training step (AnnealedVAE's capacity) names
        # `step` in its call and is given it.
        step = {"step": state.step} if _takes_step(self.objective) else {}
        extra = dict(getattr(state, "extra", {}))
        auxiliary = {"auxiliary": extra["auxiliary"]} if "auxiliary" in extra else {}

        def loss_fn(params):
            return self.objective(noise_key, x, self.model, params, **condition, **scalars, **step,
                                  **auxiliary)

        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        lr = hyper["learning_rate"] * self.lr_shape(state.step)
        if auxiliary:  # the objective's own model, at the same key and parameters
            (_, aux_metrics), aux_grads = jax.value_and_grad(
                lambda a: self.objective.auxiliary_loss(noise_key, x, self.model, state.params, a,
                                                        **condition), has_aux=True)(extra["auxiliary"])
            metrics = {**metrics, **aux_metrics}

        def update():
            direction, opt_state = self.direction.update(grads, state.opt_state, state.params)
            out = {"params": jax.tree.map(lambda p, d: p - lr * d, state.params, direction),
                   "opt_state": opt_state}
            if auxiliary:
                updates, out["auxiliary_opt_state"] = self.objective.auxiliary_optimizer.update(
                    aux_grads, extra["auxiliary_opt_state"], extra["auxiliary"])
                out["auxiliary"] = optax.apply_updates(extra["auxiliary"], updates)
            return out

        metrics = {"loss": loss, **metrics, **scalars, "lr": lr}
        if self.skip_grad_norm > 0:  # VDVAE's skip: no update is applied, and it is counted
            norm = optax.tree.norm(grads)
            skip = ~jnp.isfinite(norm) | (norm > self.skip_grad_norm)
            kept = {"params": state.params, "opt_state": state.opt_state,
                    **{k: extra[k] for k in ("auxiliary", "auxiliary_opt_state") if k in extra}}
            new = jax.lax.cond(skip, lambda: kept, update)
            metrics |= {"skipped": skip.astype(jnp.int32), "grad_norm": norm}
        else:
            new = update()
        params, opt_state = new.pop("params"), new.pop("opt_state")
        if self.ema_decay > 0:
            d = self.ema_decay
            new["ema"] = jax.tree.map(lambda e, p: d * e + (1 - d) * p, extra["ema"], params)
        state = state._replace(params=params, opt_state=opt_state, step=state.step + 1)
        return (state._replace(extra={**extra, **new}) if extra else state), metrics

    def train_epoch(self, state: TrainState, hyper, data, epoch, *,
                    on_steps: Callable[[jax.Array], None] | None = None, every: int = 0):
        """One pass over `data` (`Examples`, or images (N, H, W, C) uint8) in an order drawn
        from (seed, epoch).

        With `on_steps` and `every` > 0, the host function `on_steps(n)` is called from inside
        the scan after every `every`-th step, n the steps done in this epoch (an int32 scalar,
        the same for every member of a vmapped group, so a group calls it once): progress
        output. It changes no number the epoch computes. It is compiled in only when the
        epoch has at least `every` steps: a program without a host callback can be kept in
        JAX's persistent compilation cache, and an epoch shorter than `every` never calls it.

        Returns the new state and per-step metrics, each of shape (steps_per_epoch,).
        """
        examples = data_lib.as_examples(data)
        keys = run_keys(hyper["seed"])
        order = data_lib.epoch_indices(
            jax.random.fold_in(keys.data, epoch), examples.images.shape[0], self.batch_size)

        reports = on_steps is not None and 0 < every <= order.shape[0]

        def body(state, inputs):
            i, batch_idx = inputs
            out = self.train_step(state, hyper, examples.take(batch_idx), keys)
            if reports:
                jax.lax.cond((i + 1) % every == 0,
                             lambda: jax.debug.callback(on_steps, i + 1), lambda: None)
            return out

        steps = jnp.arange(order.shape[0], dtype=jnp.int32)  # not batched under vmap
        return jax.lax.scan(body, state, (steps, order))

