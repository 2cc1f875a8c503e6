"""Training: a plain-pytree state, one jitted `lax.scan` per epoch, orbax checkpoints.

A run is a pure function of (config, seed). The seed's key is split once:

    init_key, data_key, train_key, eval_key = jax.random.split(jax.random.key(seed), 4)

`data_key` folded with the epoch orders the batches; `train_key` folded with the global
step gives that step's binarization and reparameterization noise. Nothing depends on how
many epochs ran in this process, so a resumed run equals an uninterrupted one bit for bit.

`TrainProgram` holds what the config fixes statically (model, optimizer, objective); its
`init_state` / `train_epoch` / `validate` are pure functions of one member's `TrainState`
and `Hyper`. `vaejax.sweep` vmaps the very same functions over the members of a group.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import shutil
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vaejax import data as data_lib
from vaejax import evaluate, objectives, records
from vaejax.models import VAE, make_vae

# Metrics that measure the machine, not the model: excluded from reproducibility checks.
TIMING_KEYS = ("epoch_time", "examples_per_sec", "compile_time", "wall_time")


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or Inf; the last good checkpoint is kept."""


class WorkdirExistsError(FileExistsError):
    """The workdir holds a run and neither --resume nor --overwrite was given."""


class TrainState(NamedTuple):
    """Everything that changes during training: a plain pytree."""

    params: Any
    opt_state: Any
    step: jax.Array  # int32 scalar: optimizer steps taken


class Hyper(NamedTuple):
    """Scalar settings that may differ between the members of a vmapped sweep group."""

    seed: jax.Array  # int32
    beta: jax.Array  # float32: the KL weight at the end of its schedule
    learning_rate: jax.Array  # float32: the peak learning rate

    @classmethod
    def from_config(cls, config) -> "Hyper":
        return cls(
            seed=jnp.asarray(config.seed, jnp.int32),
            beta=jnp.asarray(config.objective.beta, jnp.float32),
            learning_rate=jnp.asarray(config.optimizer.learning_rate, jnp.float32),
        )


class RunKeys(NamedTuple):
    init: jax.Array
    data: jax.Array
    train: jax.Array
    eval: jax.Array


def run_keys(seed) -> RunKeys:
    """The four independent streams of a run, from its seed (works on a traced seed)."""
    return RunKeys(*jax.random.split(jax.random.key(seed), 4))


def _lr_shape(config, total_steps: int) -> Callable[[jax.Array], jax.Array]:
    """The learning-rate schedule divided by its peak: a function of the step, in [0, 1]."""
    opt = config.optimizer
    if opt.schedule == "constant":
        return lambda step: jnp.ones((), jnp.float32)
    if opt.schedule == "cosine":
        return optax.cosine_decay_schedule(1.0, max(total_steps, 1))
    if opt.schedule == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(0.0, 1.0, opt.warmup_steps, max(total_steps, 1))
    raise ValueError(
        f"Unknown optimizer.schedule {opt.schedule!r}; choose constant, cosine or warmup_cosine."
    )


def _direction(config) -> optax.GradientTransformation:
    """The optimizer without its learning rate (applied from `Hyper`, so it can be vmapped)."""
    opt = config.optimizer
    parts = []
    if opt.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(opt.grad_clip_norm))
    parts.append(optax.scale_by_adam(b1=opt.b1, b2=opt.b2, eps=opt.eps))
    if opt.name == "adamw":
        parts.append(optax.add_decayed_weights(opt.weight_decay))
    elif opt.name != "adam":
        raise ValueError(f"Unknown optimizer.name {opt.name!r}; choose adam or adamw.")
    return optax.chain(*parts)


def model_data_shape(kind: str, image_shape) -> tuple[int, ...]:
    """The shape a model of `kind` reads: flat (H*W*C,) vectors for an MLP, images for conv.

    An MLP on (28, 28, 1) images runs ~30% slower on CPU than on (784,) vectors: XLA's CPU
    layouts for the trailing size-1 axis cost a copy per step. The data stay images.
    """
    image_shape = tuple(int(d) for d in image_shape)
    return (int(np.prod(image_shape)),) if kind == "mlp" else image_shape


@dataclasses.dataclass(frozen=True)
class TrainProgram:
    """The static half of a run: shapes, model, optimizer and objective fixed by the config."""

    vae: VAE
    likelihood: str
    preprocessing: str
    objective: str
    num_samples: int
    analytic_kl: bool
    free_bits: float
    batch_size: int
    steps_per_epoch: int
    direction: optax.GradientTransformation
    beta_schedule: Callable
    lr_shape: Callable
    eval_batch_size: int
    # With several devices, `train` shards each batch over a mesh axis "data" (None: no
    # constraint; XLA's SPMD partitioner then all-reduces the gradients).
    batch_sharding: Any = None

    @classmethod
    def build(cls, config, data_shape, num_train: int) -> "TrainProgram":
        if config.train.batch_size <= 0 or config.train.batch_size > num_train:
            raise ValueError(
                f"train.batch_size={config.train.batch_size} must be in [1, {num_train}] "
                f"(the number of training examples)."
            )
        if config.objective.kind not in ("elbo", "iwae"):
            raise ValueError(f"Unknown objective.kind {config.objective.kind!r}; choose elbo or iwae.")
        if config.data.preprocessing not in data_lib.PREPROCESSING:
            raise ValueError(
                f"Unknown data.preprocessing {config.data.preprocessing!r}; "
                f"choose one of {data_lib.PREPROCESSING}."
            )
        model = config.model
        vae = make_vae(
            model.kind,
            data_shape=model_data_shape(model.kind, data_shape),
            latent_dim=model.latent_dim,
            hidden_sizes=model.hidden_sizes,
            activation=model.activation,
            likelihood=config.likelihood,
            gaussian_logvar=model.gaussian_logvar,
        )
        steps_per_epoch = num_train // config.train.batch_size
        obj = config.objective
        if obj.beta_schedule not in objectives.SCHEDULES:
            raise ValueError(f"Unknown objective.beta_schedule {obj.beta_schedule!r}; choose one "
                             f"of {sorted(objectives.SCHEDULES)}.")
        schedule_kwargs = {"constant": {}, "linear": {"warmup_steps": obj.warmup_steps},
                           "cyclical": {"cycle_steps": obj.cycle_steps}}[obj.beta_schedule]
        beta_schedule = functools.partial(objectives.SCHEDULES[obj.beta_schedule], **schedule_kwargs)
        return cls(
            vae=vae,
            likelihood=config.likelihood,
            preprocessing=config.data.preprocessing,
            objective=obj.kind,
            num_samples=obj.num_samples,
            analytic_kl=obj.analytic_kl,
            free_bits=float(obj.free_bits),
            batch_size=config.train.batch_size,
            steps_per_epoch=steps_per_epoch,
            direction=_direction(config),
            beta_schedule=beta_schedule,
            lr_shape=_lr_shape(config, steps_per_epoch * config.train.epochs),
            eval_batch_size=config.eval.batch_size,
        )

    # -- pure functions of one member ---------------------------------------------------

    def init_state(self, hyper: Hyper) -> TrainState:
        params = self.vae.init(run_keys(hyper.seed).init)
        return TrainState(params, self.direction.init(params), jnp.zeros((), jnp.int32))

    def loss(self, params, key, x_BxD, beta):
        """Minus the training objective, averaged over the batch; aux in nats per example."""
        encode = functools.partial(self.vae.encode, params)
        decode = functools.partial(self.vae.decode, params)
        if self.objective == "elbo":
            kwargs = dict(num_samples=self.num_samples, analytic_kl=self.analytic_kl)
            if self.free_bits > 0:
                kwargs["free_bits"] = self.free_bits
            value, aux = objectives.batch_elbo(
                key, x_BxD, encode, decode, likelihood=self.likelihood, beta=beta, **kwargs)
        else:
            value, aux = objectives.batch_iwae_bound(
                key, x_BxD, encode, decode, likelihood=self.likelihood, num_samples=self.num_samples)
        return -value, aux

    def train_step(self, state: TrainState, hyper: Hyper, x_uint8, keys: RunKeys):
        step_key = jax.random.fold_in(keys.train, state.step)
        binarize_key, noise_key = jax.random.split(step_key)
        x = data_lib.preprocess(binarize_key, x_uint8, kind=self.preprocessing)
        x = x.reshape((x.shape[0],) + self.vae.data_shape)
        if self.batch_sharding is not None:
            x = jax.lax.with_sharding_constraint(x, self.batch_sharding)
        beta = self.beta_schedule(state.step, beta=hyper.beta)
        (loss, aux), grads = jax.value_and_grad(self.loss, has_aux=True)(
            state.params, noise_key, x, beta)
        direction, opt_state = self.direction.update(grads, state.opt_state, state.params)
        lr = hyper.learning_rate * self.lr_shape(state.step)
        params = jax.tree.map(lambda p, d: p - lr * d, state.params, direction)
        metrics = {"loss": loss, "rate": aux["kl"], "distortion": -aux["reconstruction"],
                   "beta": beta, "lr": lr}
        return TrainState(params, opt_state, state.step + 1), metrics

    def train_epoch(self, state: TrainState, hyper: Hyper, images_uint8, epoch):
        """One pass over `images_uint8` (N, H, W, C) in an order drawn from (seed, epoch).

        Returns the new state and per-step metrics, each of shape (steps_per_epoch,).
        """
        keys = run_keys(hyper.seed)
        order = data_lib.epoch_indices(
            jax.random.fold_in(keys.data, epoch), images_uint8.shape[0], self.batch_size)

        def body(state, batch_idx):
            return self.train_step(state, hyper, images_uint8[batch_idx], keys)

        return jax.lax.scan(body, state, order)

    def validate(self, params, hyper: Hyper, images_uint8):
        """Negative ELBO, rate and distortion on `images_uint8` (nats per example)."""
        keys = run_keys(hyper.seed)
        m = evaluate.elbo_metrics(
            self.vae, params, images_uint8, keys.eval, likelihood=self.likelihood,
            preprocessing=self.preprocessing, batch_size=self.eval_batch_size)
        return {"neg_elbo": m["neg_elbo"], "rate": m["rate"], "distortion": m["distortion"]}


# -- the host-side loop ------------------------------------------------------------------


def data_parallel(program: TrainProgram, *arrays, devices=None, log=print):
    """Spreads training over all local devices: a mesh with one axis "data".

    Returns the program with its batches sharded over "data" and `arrays` (pytrees) placed
    replicated on the mesh. With one device, or a batch size the device count does not
    divide, returns everything unchanged. Every example keeps its own key, so results equal
    one device's up to the order of floating-point reductions.
    """
    devices = jax.devices() if devices is None else devices
    if len(devices) < 2:
        return (program, *arrays)
    if program.batch_size % len(devices):
        log(f"train: batch size {program.batch_size} is not divisible by {len(devices)} "
            "devices; training on one device")
        return (program, *arrays)
    mesh = jax.sharding.Mesh(np.asarray(devices), ("data",))
    batch = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    log(f"train: each batch of {program.batch_size} is sharded over {len(devices)} devices")
    placed = [None if a is None else jax.device_put(a, replicated) for a in arrays]
    return (dataclasses.replace(program, batch_sharding=batch), *placed)


@dataclasses.dataclass
class Splits:
    train: jax.Array  # (N, H, W, C) uint8 on device
    validation: jax.Array | None
    test: jax.Array
    source: str


def load_splits(config, log=print) -> Splits:
    """The dataset of `config.data`, split and put on the default device as uint8."""
    ds = data_lib.load(config.data.name, data_dir=config.data.data_dir or None, log=log)
    train_x, validation_x = ds.train_images, None
    if config.data.num_validation > 0:
        (train_x, _), (validation_x, _) = data_lib.split_validation(
            ds.train_images, ds.train_labels, num_validation=config.data.num_validation)
    if config.data.num_train > 0:
        train_x = train_x[: config.data.num_train]
    return Splits(
        train=data_lib.to_device(train_x),
        validation=None if validation_x is None else data_lib.to_device(validation_x),
        test=data_lib.to_device(ds.test_images),
        source=ds.source,
    )


def prepare_workdir(workdir, *, resume: bool, overwrite: bool, log=print) -> pathlib.Path:
    """Creates `workdir`; an existing run is kept unless --resume, or moved aside on --overwrite."""
    workdir = pathlib.Path(workdir)
    if workdir.exists() and any(workdir.iterdir()):
        if overwrite:
            aside = workdir.with_name(f"{workdir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
            shutil.move(str(workdir), aside)
            log(f"train: --overwrite: moved the previous run to {aside}")
        elif not resume:
            raise WorkdirExistsError(
                f"{workdir} already holds a run. Pass --resume to continue it, --overwrite to "
                f"start again (the old run is moved aside, not deleted), or choose another --workdir."
            )
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir


def epoch_record(epoch, step, train_metrics, val_metrics, epoch_time, num_examples):
    record = {"epoch": epoch, "step": step}
    for name in ("loss", "rate", "distortion"):
        record[f"train/{name}"] = float(np.mean(train_metrics[name]))
    record["train/neg_elbo"] = record["train/rate"] + record["train/distortion"]
    record["lr"] = float(train_metrics["lr"][-1])
    record["beta"] = float(train_metrics["beta"][-1])
    if val_metrics is not None:
        for name, value in val_metrics.items():
            record[f"val/{name}"] = float(value)
    record["epoch_time"] = epoch_time
    record["examples_per_sec"] = num_examples / epoch_time
    return record


def train(config, workdir, *, resume: bool = False, overwrite: bool = False,
          evaluate_at_end: bool = True, log=print) -> dict:
    """Trains `config` in `workdir` (checkpoints, metrics.jsonl, run.json), then evaluates.

    Returns the final epoch's metrics record (and `results` when evaluated).
    """
    from tqdm.auto import tqdm  # noqa: PLC0415  (progress output only)

    from vaejax import checkpoints  # noqa: PLC0415

    workdir = prepare_workdir(workdir, resume=resume, overwrite=overwrite, log=log)
    splits = load_splits(config, log=log)
    program = TrainProgram.build(config, splits.train.shape[1:], splits.train.shape[0])
    hyper = Hyper.from_config(config)
    records.write_run_record(workdir, config, data_source=splits.source)

    manager = checkpoints.Manager(workdir, keep=config.train.keep_checkpoints)
    state = jax.jit(program.init_state)(hyper)
    start_epoch = 0
    if manager.latest_epoch() is not None:
        start_epoch = manager.latest_epoch()
        state = manager.restore(start_epoch, state)
        log(f"train: resumed from the checkpoint of epoch {start_epoch} (step {int(state.step)})")
    records.truncate_metrics(workdir, start_epoch)
    program, state, hyper, train_x, validation_x = data_parallel(
        program, state, hyper, splits.train, splits.validation, log=log)
    splits = dataclasses.replace(splits, train=train_x, validation=validation_x)

    compile_start = time.perf_counter()
    epoch_fn = jax.jit(program.train_epoch, donate_argnums=0).lower(
        state, hyper, splits.train, jnp.int32(start_epoch)).compile()
    compile_time = time.perf_counter() - compile_start
    validate_fn = jax.jit(program.validate)
    epochs = config.train.epochs
    num_examples = program.steps_per_epoch * program.batch_size
    record = records.last_metrics(workdir)
    bar = tqdm(range(start_epoch, epochs), total=epochs, initial=start_epoch, unit="epoch",
               desc="train", dynamic_ncols=True, disable=start_epoch >= epochs)
    for epoch in bar:
        start = time.perf_counter()
        first_step = int(state.step)
        state, metrics = epoch_fn(state, hyper, splits.train, jnp.int32(epoch))
        metrics = jax.device_get(metrics)
        epoch_time = time.perf_counter() - start
        bad = ~np.isfinite(metrics["loss"])
        if bad.any():
            step = first_step + int(np.argmax(bad)) + 1
            good = manager.latest_epoch()
            raise TrainingDiverged(
                f"The loss became {metrics['loss'][bad][0]} at step {step} (epoch {epoch + 1}). "
                + (f"The last good checkpoint (epoch {good}) is kept in {manager.directory}."
                   if good is not None else "No checkpoint was written before it.")
                + " Lower optimizer.learning_rate or set optimizer.grad_clip_norm.")
        val = None
        if config.train.validate and splits.validation is not None:
            val = jax.device_get(validate_fn(state.params, hyper, splits.validation))
        record = epoch_record(epoch + 1, int(state.step), metrics, val, epoch_time, num_examples)
        if epoch == start_epoch:
            record["compile_time"] = compile_time
        # Metrics first, then the checkpoint: a kill in between re-runs this epoch on resume
        # and `truncate_metrics` drops its line, so metrics.jsonl never has gaps or repeats.
        records.append_metrics(workdir, record)
        if (epoch + 1) % config.train.checkpoint_every == 0 or epoch + 1 == epochs:
            manager.save(epoch + 1, state)
        bar.set_postfix(loss=f"{record['train/loss']:.2f}", rate=f"{record['train/rate']:.2f}",
                        distortion=f"{record['train/distortion']:.2f}",
                        **({"val": f"{record['val/neg_elbo']:.2f}"} if val is not None else {}))
    bar.close()
    manager.close()

    result = dict(record or {})
    results_path = workdir / records.RESULTS
    if evaluate_at_end and start_epoch >= epochs and results_path.exists():
        log(f"train: {workdir} already finished {epochs} epochs and was evaluated; kept as is "
            f"(vaejax eval --workdir {workdir} evaluates again)")
        result["results"] = records.read_json(results_path)
    elif evaluate_at_end:
        params = state.params
        if program.batch_sharding is not None:  # evaluate on the device that holds the test set
            params = jax.device_put(params, splits.test.sharding)
        result["results"] = evaluate.evaluate_run(workdir, config=config, params=params,
                                                  program=program, splits=splits, log=log)
    return result


def restore_params(workdir, program: TrainProgram, hyper: Hyper, epoch: int | None = None):
    """(params, epoch) of the checkpoint of `epoch` in `workdir` (default: the latest)."""
    from vaejax import checkpoints  # noqa: PLC0415

    manager = checkpoints.Manager(workdir)
    epoch = manager.latest_epoch() if epoch is None else epoch
    if epoch is None:
        raise FileNotFoundError(
            f"No checkpoint in {manager.directory}: train first (vaejax train --workdir {workdir}).")
    state = manager.restore(epoch, jax.jit(program.init_state)(hyper))
    manager.close()
    return state.params, epoch
