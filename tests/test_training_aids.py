"""The training aids deep VAEs need, each a setting that is off by default: skipping updates
with huge or non-finite gradients (`optimizer.skip_grad_norm`), an EMA of the parameters
(`train.ema_decay`), and the KL warm-up (`objective.beta_schedule`) on a hierarchical KL."""

import json

import jax
import jax.numpy as jnp
import numpy as np

from vaejax import checkpoints, cli, records
from vaejax.program import ExtendedTrainState, Program, TrainState, evaluation_params

from run_helpers import REPO, comparable
from tiny import IMAGE_SHAPE, images, tiny_config


def _epoch(config, data_seed=0):
    program = Program.build(config, IMAGE_SHAPE, 64)
    hyper = program.hyper(config)
    state = jax.jit(program.init_state)(hyper)
    new, metrics = jax.jit(program.train_epoch)(state, hyper, jnp.asarray(images(64, data_seed)),
                                                jnp.int32(0))
    return program, state, new, metrics


def test_off_by_default_the_state_and_metrics_are_unchanged():
    program, state, _, metrics = _epoch(tiny_config())
    assert program.skip_grad_norm == 0 and program.ema_decay == 0
    assert type(state) is TrainState and "skipped" not in metrics


def test_a_skipped_update_leaves_params_and_optimizer_state_unchanged_and_is_counted():
    # Every gradient of this model is far above 1e-6: every update is skipped.
    _, state, new, metrics = _epoch(tiny_config("optimizer.skip_grad_norm=1e-6"))
    jax.tree.map(np.testing.assert_array_equal, new.params, state.params)
    jax.tree.map(np.testing.assert_array_equal, new.opt_state, state.opt_state)
    assert int(new.step) == 8  # the step still advances: it indexes batches, keys and schedules
    np.testing.assert_array_equal(metrics["skipped"], np.ones(8))
    assert np.all(metrics["grad_norm"] > 1e-6)
    # A threshold above every norm skips nothing, and trains exactly as no threshold does.
    _, _, kept, kept_metrics = _epoch(tiny_config("optimizer.skip_grad_norm=1e9"))
    _, _, plain, _ = _epoch(tiny_config())
    np.testing.assert_array_equal(kept_metrics["skipped"], np.zeros(8))
    jax.tree.map(np.testing.assert_array_equal, kept.params, plain.params)
    # Between: exactly the steps whose norm was above it are skipped.
    middle = float(np.median(kept_metrics["grad_norm"]))
    _, _, _, some = _epoch(tiny_config(f"optimizer.skip_grad_norm={middle}"))
    assert 0 < int(some["skipped"].sum()) < 8
    np.testing.assert_array_equal(some["skipped"], some["grad_norm"] > middle)


def test_ema_equals_the_average_computed_by_hand():
    decay = 0.9
    config = tiny_config(f"train.ema_decay={decay}")
    program = Program.build(config, IMAGE_SHAPE, 64)
    hyper = program.hyper(config)
    state = program.init_state(hyper)
    assert isinstance(state, ExtendedTrainState) and set(state.extra) == {"ema"}
    jax.tree.map(np.testing.assert_array_equal, state.extra["ema"], state.params)  # starts at init
    step = jax.jit(program.train_step)
    from vaejax.program import run_keys

    keys, data = run_keys(hyper["seed"]), images(64)
    expected = state.params
    for i in range(5):
        state, _ = step(state, hyper, data[8 * i:8 * (i + 1)], keys)
        expected = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, expected, state.params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
                 state.extra["ema"], expected)
    assert evaluation_params(state) is state.extra["ema"]
    plain = TrainState(state.params, state.opt_state, state.step)
    assert evaluation_params(plain) is plain.params


def test_the_kl_warm_up_weighs_a_hierarchical_kl():
    """At step 0 of a linear warm-up beta is 0: the loss is the reconstruction alone, though
    the two-layer model's KL is a Monte Carlo one (no closed form)."""
    import ml_collections

    config = tiny_config("objective.beta_schedule=linear", "objective.warmup_steps=100")
    config.model = ml_collections.ConfigDict(dict(kind="hierarchical", latent_dims=(3, 2),
                                                  hidden_sizes=((8,), (4,))))
    program = Program.build(config, IMAGE_SHAPE, 64)
    hyper = program.hyper(config)
    from vaejax.program import run_keys

    _, metrics = program.train_step(program.init_state(hyper), hyper, images(8), run_keys(0))
    assert float(metrics["beta"]) == 0.0 and float(metrics["rate"]) > 0.1
    np.testing.assert_allclose(metrics["loss"], metrics["distortion"], rtol=1e-6)


NAN_AT_STEP_3 = """
import dataclasses
import jax.numpy as jnp
from vaejax.objectives.training import ELBO

@dataclasses.dataclass(frozen=True)
class NanAtStep3(ELBO):
    \"\"\"The ELBO, except that step 3's loss (and so every gradient) is NaN.\"\"\"
    def __call__(self, key, x, model, params, *, condition=None, beta, step):
        loss, metrics = super().__call__(key, x, model, params, condition=condition, beta=beta)
        return jnp.where(step == 3, jnp.nan, 1.0) * loss, metrics
"""


def _train(tmp_path, name, *overrides):
    """`vaejax train` of a small MLP VAE on 256 MNIST images, 8 steps, whose step 3 is NaN."""
    folder = tmp_path / name
    folder.mkdir()
    (folder / "nan_objective.py").write_text(NAN_AT_STEP_3)
    (folder / "experiment.py").write_text(
        "from vaejax import config as config_lib\n"
        "def get_config():\n"
        f"    return config_lib.load_module({str(REPO / 'experiments' / 'default.py')!r}).get_config()\n")
    workdir = folder / "run"
    code = cli.main(["train", "--config", str(folder / "experiment.py"), "--workdir", str(workdir),
                     "--config.objective.kind=nan_objective:NanAtStep3", "--config.data.name=mnist",
                     "--config.data.num_train=256", "--config.data.num_validation=10000",
                     "--config.train.epochs=1", "--config.train.batch_size=32",
                     "--config.model.hidden_sizes=(16,)", "--config.model.latent_dim=2",
                     "--config.eval.iwae_samples=0", "--config.eval.figures=false", *overrides])
    return code, workdir


def test_a_nan_gradient_is_skipped_and_counted_where_it_would_end_the_run(tmp_path, mnist_dir):
    """Caused for real: a plug-in objective whose step 3 is NaN. Without skipping the run is
    written off as diverged; with `optimizer.skip_grad_norm` it trains on, one update skipped,
    counted in metrics.jsonl, and the epoch's averages are of the steps that were applied."""
    data = f"--config.data.data_dir={mnist_dir}"
    _, plain = _train(tmp_path, "plain", data)
    assert (plain / records.DIVERGED).exists()
    assert json.loads((plain / records.DIVERGED).read_text())["step"] == 4  # steps count from 1
    code, skipping = _train(tmp_path, "skipping", data, "--config.optimizer.skip_grad_norm=1e9")
    assert code == 0 and not (skipping / records.DIVERGED).exists()
    (row,) = records.read_metrics(skipping)
    assert row["train/skipped"] == 1 and np.isfinite(row["train/loss"])
    assert np.isfinite(json.loads((skipping / records.RESULTS).read_text())["test/neg_elbo"])


def test_ema_runs_checkpoint_both_and_evaluate_the_average(tmp_path, mnist_dir):
    code, workdir = _train(tmp_path, "ema", f"--config.data.data_dir={mnist_dir}",
                           "--config.objective.kind=elbo", "--config.train.ema_decay=0.5")
    assert code == 0
    from vaejax.runs import load_run

    run = load_run(workdir, log=lambda *_: None)
    manager = checkpoints.Manager(workdir)
    _, state = manager.restore_latest(run.program.abstract_state(), log=lambda *_: None)
    manager.close()
    assert isinstance(state, ExtendedTrainState)
    ema = state.extra["ema"]
    jax.tree.map(np.testing.assert_array_equal, run.params, ema)  # what evaluation reads
    assert any(np.any(a != b) for a, b in zip(jax.tree.leaves(ema), jax.tree.leaves(state.params)))


def test_free_bits_per_layer_floor_only_the_layers_below_them():
    """For a hierarchical model, free bits floor each layer's Monte Carlo KL: a layer above the
    floor keeps its KL, one below it counts as the floor, from the same draws."""
    import functools

    import vaejax
    from vaejax.models import hierarchical

    model = hierarchical.hierarchical_vae(image_shape=(6,), latent_dims=(4, 2),
                                          hidden_sizes=((8,), (4,)))
    params = model.init(jax.random.key(0))
    x = (jax.random.uniform(jax.random.key(1), (6,)) > 0.5).astype(jnp.float32)
    encode, decode = (functools.partial(f, params) for f in (model.posterior, model.likelihood))
    prior, key = model.prior(params), jax.random.key(2)

    def elbo(free_bits):
        return vaejax.elbo(key, x, encode, decode, prior=prior, num_samples=3, free_bits=free_bits)

    value, aux = elbo(0.0)
    kl = aux["kl_by_variable"]
    low, high = sorted(kl.values())  # a layer's term is not itself a KL: it may be negative
    assert low < high
    np.testing.assert_allclose(low + high, aux["kl"], rtol=1e-5)
    middle = (low + high) / 2
    floored, floored_aux = elbo(middle)
    np.testing.assert_allclose(floored, aux["reconstruction"] - (high + middle), rtol=1e-5)
    assert floored_aux["kl"] == aux["kl"]  # the reported KL is never floored
    np.testing.assert_allclose(elbo(high + 1.0)[0], aux["reconstruction"] - 2 * (high + 1.0), rtol=1e-5)
    np.testing.assert_allclose(elbo(low - 0.5)[0], value, rtol=1e-6)  # both above: unchanged


def test_factor_vae_trains_both_models_through_the_cli_and_resumes_bitwise(tmp_path, mnist_dir):
    """FactorVAE's discriminator and its optimizer live in the checkpoint beside the VAE's: a
    run stopped after epoch 1 and resumed ends bitwise equal to one trained straight through."""
    common = [f"--config.data.data_dir={mnist_dir}", "--config.objective.kind=factor_vae",
              "--config.objective.gamma=10.0"]
    code, straight = _train(tmp_path, "straight", *common, "--config.train.epochs=2")
    assert code == 0
    code, resumed = _train(tmp_path, "resumed", *common, "--config.train.epochs=1")
    assert code == 0
    assert cli.main(["train", "--workdir", str(resumed), "--resume",
                     "--config.train.epochs=2"]) == 0
    states = []
    for workdir in (straight, resumed):
        from vaejax.runs import load_run

        run = load_run(workdir, log=lambda *_: None)
        manager = checkpoints.Manager(workdir)
        epoch, state = manager.restore_latest(run.program.abstract_state(), log=lambda *_: None)
        manager.close()
        assert epoch == 2 and set(state.extra) == {"auxiliary", "auxiliary_opt_state"}
        states.append(state)
    jax.tree.map(np.testing.assert_array_equal, states[0], states[1])
    rows = records.read_metrics(straight)
    assert {"train/tc", "train/discriminator_loss", "train/discriminator_accuracy"} <= set(rows[-1])
    assert comparable(rows) == comparable(records.read_metrics(resumed))


def test_the_disentangling_objectives_sweep_as_vmapped_groups_over_their_strength(tmp_path, mnist_dir):
    """`vaejax sweep`: each of FactorVAE, DIP-VAE-I/II and AnnealedVAE at two strengths is one
    vmapped group of two members, and every run finishes."""
    (tmp_path / "study.py").write_text(
        "from vaejax import config as config_lib\n"
        "def get_config():\n"
        f"    return config_lib.load_module({str(REPO / 'experiments' / 'default.py')!r}).get_config()\n"
        "def get_sweep():\n"
        "    return ([{'objective.kind': 'factor_vae', 'objective.gamma': g} for g in (10.0, 20.0)]\n"
        "            + [{'objective.kind': 'dip_vae', 'objective.dip_type': t, 'objective.lambda_od': l}\n"
        "               for t in ('i', 'ii') for l in (1.0, 2.0)]\n"
        "            + [{'objective.kind': 'annealed_vae', 'objective.capacity_max': c,\n"
        "                'objective.capacity_steps': 8} for c in (5.0, 10.0)])\n")
    sweep_dir = tmp_path / "sweep"
    assert cli.main(["sweep", str(tmp_path / "study.py"), "--workdir", str(sweep_dir),
                     f"--config.data.data_dir={mnist_dir}", "--config.data.name=mnist",
                     "--config.data.num_train=256", "--config.data.num_validation=10000",
                     "--config.train.epochs=1", "--config.train.batch_size=32",
                     "--config.model.hidden_sizes=(16,)", "--config.model.latent_dim=2",
                     "--config.eval.iwae_samples=0", "--config.eval.figures=false"]) == 0
    from vaejax import sweep

    rows = sweep.collect(sweep_dir, log=lambda *_: None)[0]
    assert len(rows) == 8 and {r["status"] for r in rows} == {"finished"}
    groups = {}
    for row in rows:
        groups.setdefault(row["group"], []).append(row["name"])
    assert sorted(len(g) for g in groups.values()) == [2, 2, 2, 2]  # one group per method


def test_kl_balance_coefficients_follow_nvae_and_carry_no_gradient():
    """m_l = mean_b |KL_l| + 0.01 per group, divided by its size, normalised to mean 1 (NVAE's
    kl_balancer), computed by hand; the gradient of the balanced KL is the coefficients alone."""
    from vaejax.objectives import bounds

    kl = {"z1": jnp.array([1.0, -3.0]), "z2": jnp.array([0.5, 0.5])}
    sizes = {"z1": 4, "z2": 2}
    share = np.array([(2.0 + 0.01) / 4, (0.5 + 0.01) / 2])
    expected = share / share.mean()
    coefficients = bounds.kl_balance_coefficients(kl, sizes)
    np.testing.assert_allclose([coefficients["z1"], coefficients["z2"]], expected, rtol=1e-6)

    def balanced(kl):
        c = bounds.kl_balance_coefficients(kl, sizes)
        return sum(c[name] * jnp.mean(kl[name]) for name in kl)

    grads = jax.grad(balanced)(kl)
    np.testing.assert_allclose(grads["z1"], [expected[0] / 2] * 2, rtol=1e-6)
    np.testing.assert_allclose(grads["z2"], [expected[1] / 2] * 2, rtol=1e-6)


def test_kl_balance_reweighs_each_layer_during_warm_up_only():
    """With beta < 1 the loss is -(reconstruction - beta * sum_l c_l KL_l) of the same draws; at
    beta = 1 (warm-up over) it is the plain ELBO's; it is refused with free bits, and for a
    model without layers."""
    import pytest

    from vaejax.models import hierarchical, mlp
    from vaejax.objectives import bounds
    from vaejax.objectives.common import model_functions, over_examples
    from vaejax.objectives.training import ELBO

    model = hierarchical.hierarchical_vae(image_shape=(6,), latent_dims=(4, 2),
                                          hidden_sizes=((8,), (4,)))
    params = model.init(jax.random.key(0))
    x = (jax.random.uniform(jax.random.key(1), (5, 6)) > 0.5).astype(jnp.float32)
    key = jax.random.key(2)
    balanced, plain = ELBO(kl_balance=True), ELBO()

    _, aux = over_examples(bounds.elbo, key, x, lambda c: model_functions(model, params), beta=0.3)
    kl = aux["kl_by_variable"]
    c = bounds.kl_balance_coefficients(kl, {"z1": 4, "z2": 2})
    assert abs(float(c["z1"]) - float(c["z2"])) > 1e-3   # the layers are weighed differently
    expected = -(jnp.mean(aux["reconstruction"]) - 0.3 * (c["z1"] * jnp.mean(kl["z1"])
                                                          + c["z2"] * jnp.mean(kl["z2"])))
    loss, metrics = balanced(key, x, model, params, beta=jnp.float32(0.3))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    assert not np.isclose(float(loss), float(plain(key, x, model, params, beta=jnp.float32(0.3))[0]))
    np.testing.assert_allclose(metrics["rate"], jnp.mean(aux["kl"]), rtol=1e-5)  # never reweighed
    np.testing.assert_allclose(balanced(key, x, model, params, beta=jnp.float32(1.0))[0],
                               plain(key, x, model, params, beta=jnp.float32(1.0))[0], rtol=1e-6)

    with pytest.raises(ValueError, match="free_bits"):
        ELBO(kl_balance=True, free_bits=0.5)
    one_layer = mlp.mlp_vae(image_shape=(6,), latent_dim=2, hidden_sizes=(4,))
    with pytest.raises(ValueError, match="hierarchical model"):
        balanced(key, x, one_layer, one_layer.init(jax.random.key(0)), beta=jnp.float32(0.3))


def test_weight_norm_layer_is_g_v_over_its_norm_and_initialises_on_data():
    """y = g (x @ v) / ||v|| + b by hand; initialised on a batch, each unit's pre-activation has
    mean 0 and variance 1 over it (Salimans & Kingma's data-dependent init); on one example,
    g = 1 and b = 0."""
    from vaejax.models.weight_norm import WNDense

    x = jax.random.normal(jax.random.key(0), (300, 5)) * 3.0 + 1.0
    layer = WNDense(4)
    params = layer.init(jax.random.key(1), x)["params"]
    v, g, b = (np.asarray(params[k]) for k in ("kernel", "scale", "bias"))
    t = np.asarray(x) @ (np.asarray(v) / np.linalg.norm(v, axis=0))
    np.testing.assert_allclose(layer.apply({"params": params}, x), t * g + b, rtol=1e-5, atol=1e-5)
    y = t * g + b
    np.testing.assert_allclose(y.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(y.var(0), 1.0, rtol=1e-4)
    one = layer.init(jax.random.key(1), x[0])["params"]
    np.testing.assert_array_equal(one["scale"], 1.0)
    np.testing.assert_array_equal(one["bias"], 0.0)
    np.testing.assert_array_equal(one["kernel"], v)  # the same draw of v either way


def test_weight_norm_hierarchies_initialise_every_layer_on_the_images():
    """The ladder's bottom-up layers (deterministic in x) start with unit pre-activations on
    the init images; without the images, or with normalization 'none', init reads no data."""
    from vaejax.models import hierarchical

    rng = np.random.default_rng(0)
    images = (rng.uniform(size=(400, 12)) < 0.3).astype(np.float32)
    kw = dict(image_shape=(12,), latent_dims=(4, 3, 2), hidden_sizes=((8, 8), (6,), (5,)),
              activation="leaky_relu")
    model = hierarchical.ladder_vae(**kw, normalization="weight_norm", init_images=images)
    params = model.init(jax.random.key(0))
    d = images
    for name in ("up_z1", "up_z2", "up_z3"):
        layers = params[name]
        for i in range(len([k for k in layers if k.startswith("WNDense")])):
            w = {k: np.asarray(v) for k, v in layers[f"WNDense_{i}"].items()}
            pre = d @ (w["kernel"] / np.linalg.norm(w["kernel"], axis=0)) * w["scale"] + w["bias"]
            np.testing.assert_allclose(pre.mean(0), 0.0, atol=2e-4)
            np.testing.assert_allclose(pre.var(0), 1.0, rtol=2e-3)
            d = np.asarray(jax.nn.leaky_relu(pre))
    for name in ("p_x", "p_z1", "p_z2"):  # p's layers too: initialised on draws of q
        assert not np.allclose(params[name]["WNDense_0"]["scale"], 1.0)
    without = hierarchical.ladder_vae(**kw, normalization="weight_norm").init(jax.random.key(0))
    np.testing.assert_array_equal(without["up_z1"]["WNDense_0"]["scale"], 1.0)
    plain = hierarchical.ladder_vae(**kw, init_images=images)  # no normalization: images unused
    assert plain.init_images is None and "Dense_0" in plain.init(jax.random.key(0))["up_z1"]
