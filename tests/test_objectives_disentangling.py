"""DIP-VAE and AnnealedVAE (`vaejax.objectives.disentangling`) against their definitions in
disentanglement_lib, computed independently in NumPy, and the step reaching the objective."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaejax import models
from vaejax.objectives import OBJECTIVES, disentangling, training
from vaejax.program import Program

from tiny import IMAGE_SHAPE, images, tiny_config  # noqa: E402


def test_dip_covariance_is_the_biased_covariance_of_the_means_plus_the_mean_variance():
    rng = np.random.default_rng(0)
    mean, var = rng.normal(size=(64, 5)), rng.uniform(0.1, 2.0, size=(64, 5))
    np.testing.assert_allclose(disentangling.dip_covariance(jnp.asarray(mean)),
                               np.cov(mean, rowvar=False, bias=True), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(disentangling.dip_covariance(jnp.asarray(mean), jnp.asarray(var)),
                               np.cov(mean, rowvar=False, bias=True) + np.diag(var.mean(0)),
                               rtol=1e-5, atol=1e-6)


def test_dip_penalty_is_zero_at_the_identity_and_weighs_each_part():
    assert float(disentangling.dip_penalty(jnp.eye(4), lambda_od=3.0, lambda_d=7.0)) == 0.0
    cov = np.array([[2.0, 0.5], [0.5, 0.25]])
    # off-diagonal: 2 * 0.5^2 = 0.5; diagonal: (2 - 1)^2 + (0.25 - 1)^2 = 1.5625
    np.testing.assert_allclose(disentangling.dip_penalty(jnp.asarray(cov), lambda_od=3.0, lambda_d=7.0),
                               3.0 * 0.5 + 7.0 * 1.5625, rtol=1e-6)


def test_annealed_capacity_grows_linearly_then_holds():
    capacity = lambda step: float(disentangling.annealed_capacity(  # noqa: E731
        step, capacity_max=25.0, capacity_steps=100))
    assert [capacity(s) for s in (0, 50, 100, 1000)] == [0.0, 12.5, 25.0, 25.0]


def _setup(*overrides):
    config = tiny_config(*overrides)
    program = Program.build(config, IMAGE_SHAPE, 64)
    params = program.model.init(jax.random.key(0))
    x = program.inputs(jax.random.key(1), jnp.asarray(images(16)))
    elbo = training.OBJECTIVES.get("elbo")()
    return program, params, x, elbo


@pytest.mark.parametrize("dip_type", ["i", "ii"])
def test_dip_vae_is_the_negative_elbo_plus_the_penalty_of_the_posterior_covariance(dip_type):
    program, params, x, elbo = _setup("objective.kind=dip_vae", f"objective.dip_type={dip_type}")
    key = jax.random.key(2)
    loss, metrics = program.objective(key, x, program.model, params, lambda_od=2.0, lambda_d_factor=10.0)
    neg_elbo, _ = elbo(key, x, program.model, params, beta=1.0)
    q = jax.vmap(lambda x_i: program.model.posterior(params, x_i))(x)
    mean, var = np.asarray(q.mean(), np.float64), np.asarray(q.variance(), np.float64)
    cov = np.cov(mean, rowvar=False, bias=True) + (np.diag(var.mean(0)) if dip_type == "ii" else 0.0)
    off = cov - np.diag(np.diag(cov))
    penalty = 2.0 * np.sum(off ** 2) + 20.0 * np.sum((np.diag(cov) - 1.0) ** 2)
    np.testing.assert_allclose(float(metrics["dip"]), penalty, rtol=1e-4)
    np.testing.assert_allclose(float(loss), float(neg_elbo) + penalty, rtol=1e-5)


def test_annealed_vae_holds_the_kl_at_the_capacity_of_the_step():
    program, params, x, elbo = _setup("objective.kind=annealed_vae", "objective.capacity_steps=10")
    key = jax.random.key(3)
    _, parts = elbo(key, x, program.model, params, beta=1.0)
    for step, capacity in ((0, 0.0), (5, 20.0), (10, 40.0), (99, 40.0)):
        loss, metrics = program.objective(key, x, program.model, params, step=jnp.int32(step),
                                          capacity_max=40.0, capacity_weight=1000.0)
        assert float(metrics["capacity"]) == capacity
        np.testing.assert_allclose(float(loss), float(parts["distortion"])
                                   + 1000.0 * abs(float(parts["rate"]) - capacity), rtol=1e-5)
    # |KL - C| pulls the KL towards C from either side: d loss / d C is -weight while the KL
    # is above C and +weight once C passes it.
    kl = float(parts["rate"])
    for capacity, expected in ((0.0, -1000.0), (kl + 10.0, 1000.0)):
        grad = jax.grad(lambda c: program.objective(key, x, program.model, params, step=jnp.int32(10),
                                                    capacity_max=c, capacity_weight=1000.0)[0])
        assert float(grad(jnp.float32(capacity))) == pytest.approx(expected, rel=1e-5)


def test_training_gives_annealed_vae_the_optimizer_step():
    """The epoch passes each step's number: the logged capacity rises by C_max / capacity_steps
    per step, then holds."""
    from vaejax import loop  # noqa: PLC0415

    config = tiny_config("objective.kind=annealed_vae", "objective.capacity_max=8.0",
                         "objective.capacity_steps=4")
    program = Program.build(config, IMAGE_SHAPE, 64)
    hyper = jax.tree.map(lambda a: a[None], program.hyper(config))
    fns = loop.epoch_functions(program, num_members=1)
    state = jax.vmap(program.init_state)(hyper)
    _, metrics = fns.epoch(state, hyper, jnp.asarray(images(64)), jnp.int32(0))
    np.testing.assert_allclose(np.asarray(metrics["capacity"])[0, :6], [0, 2, 4, 6, 8, 8])


def test_unknown_dip_type_is_refused():
    with pytest.raises(ValueError, match="dip_type='iii'"):
        disentangling.DIPVAE(dip_type="iii")


# -- FactorVAE ------------------------------------------------------------------------------

def _factor_vae_setup(batch=16):
    model = models.mlp_vae(image_shape=(4, 4, 1), latent_dim=3, hidden_sizes=(8,))
    params = model.init(jax.random.key(0))
    x = (jax.random.uniform(jax.random.key(1), (batch, 16)) > 0.5).astype(jnp.float32)
    objective = disentangling.FactorVAE()
    discriminator = objective.init_auxiliary(jax.random.key(2), model, params, (16,))
    return disentangling, model, params, x, objective, discriminator


def test_permute_dims_shuffles_each_dimension_by_its_own_permutation():
    z = jnp.arange(64 * 3, dtype=jnp.float32).reshape(64, 3)
    shuffled = disentangling.permute_dims(jax.random.key(0), z)
    for j in range(3):
        assert sorted(np.asarray(shuffled[:, j])) == sorted(np.asarray(z[:, j]))
    orders = [np.argsort(np.asarray(shuffled[:, j])) for j in range(3)]
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])
    assert not np.array_equal(np.asarray(shuffled), np.asarray(z))


def test_factor_vae_is_the_elbo_plus_gamma_times_the_discriminators_tc():
    disentangling, model, params, x, objective, discriminator = _factor_vae_setup()
    key = jax.random.key(3)
    elbo_loss, _ = OBJECTIVES.get("elbo")()(key, x, model, params, beta=1.0)
    loss_0, metrics_0 = objective(key, x, model, params, gamma=0.0, auxiliary=discriminator)
    np.testing.assert_allclose(loss_0, elbo_loss, rtol=1e-6)  # gamma = 0: the ELBO objective
    # The TC by hand: the codes are the ELBO's own draws, one per example, from its keys.
    keys = jax.random.split(key, x.shape[0])
    z = jnp.stack([model.posterior(params, x_i).sample(seed=k, sample_shape=(1,))[0]
                   for k, x_i in zip(keys, x)])
    logits = disentangling.Discriminator().apply({"params": discriminator}, z)
    tc = jnp.mean(logits[:, 0] - logits[:, 1])
    loss_5, metrics_5 = objective(key, x, model, params, gamma=5.0, auxiliary=discriminator)
    np.testing.assert_allclose(metrics_5["tc"], tc, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loss_5, loss_0 + 5.0 * tc, rtol=1e-5, atol=1e-5)
    # Discriminator: 6 hidden layers of 1000, two logits (Kim & Mnih, appendix A).
    shapes = [discriminator[f"Dense_{i}"]["kernel"].shape for i in range(7)]
    assert shapes == [(3, 1000)] + [(1000, 1000)] * 5 + [(1000, 2)]


def test_factor_vae_trains_each_model_with_its_own_loss_only():
    """The VAE's loss has no gradient to the discriminator, and the discriminator's none to
    the VAE; the discriminator's loss is the cross-entropy of telling z from permuted z."""
    disentangling, model, params, x, objective, discriminator = _factor_vae_setup()
    key = jax.random.key(4)
    to_discriminator = jax.grad(lambda d: objective(key, x, model, params, gamma=3.0, auxiliary=d)[0])(discriminator)
    assert all(np.all(g == 0) for g in jax.tree.leaves(to_discriminator))
    to_model = jax.grad(lambda p: objective.auxiliary_loss(key, x, model, p, discriminator)[0])(params)
    assert all(np.all(g == 0) for g in jax.tree.leaves(to_model))
    loss, metrics = objective.auxiliary_loss(key, x, model, params, discriminator)
    keys = jax.random.split(key, x.shape[0])
    z = jnp.stack([model.posterior(params, x_i).sample(seed=k, sample_shape=(1,))[0]
                   for k, x_i in zip(keys, x)])
    permute_key = jax.random.fold_in(key, disentangling.PERMUTATION_STREAM)
    apply = lambda z: disentangling.Discriminator().apply({"params": discriminator}, z)  # noqa: E731
    p_real = jax.nn.softmax(apply(z))[:, 0]
    p_permuted = jax.nn.softmax(apply(disentangling.permute_dims(permute_key, z)))[:, 1]
    np.testing.assert_allclose(loss, -0.5 * (jnp.mean(jnp.log(p_real)) + jnp.mean(jnp.log(p_permuted))),
                               rtol=1e-5)
    assert 0.0 <= float(metrics["discriminator_accuracy"]) <= 1.0
    assert any(np.any(g != 0) for g in jax.tree.leaves(
        jax.grad(lambda d: objective.auxiliary_loss(key, x, model, params, d)[0])(discriminator)))


# -- the Locatello et al. study ------------------------------------------------------------

def test_the_locatello_study_plans_one_vmapped_group_per_method():
    """experiments/locatello2019.py: six methods x six strengths x three seeds, each method's
    runs vmapped together (its strengths and seeds are traced; the plan splits a method's 18
    runs into groups of at most the default group size), at disentanglement_lib's settings."""
    from run_helpers import REPO
    from vaejax.sweep import plan as plan_lib

    plan = plan_lib.make_plan(REPO / "experiments" / "locatello2019.py")
    assert len(plan.runs) == 108

    def method(run):
        o = run.config.objective
        return o.kind + (f"_{o.dip_type}" if o.kind == "dip_vae" else "")

    assert all(len({method(r) for r in g.runs}) == 1 for g in plan.groups)
    assert sum(len(g.runs) for g in plan.groups) == 108 and len(plan.groups) <= 12
    config = plan.runs[0].config
    assert (config.model.kind, config.model.latent_dim, config.train.batch_size,
            config.optimizer.learning_rate, config.data.name) == ("beta_vae_conv", 10, 64, 1e-4, "dsprites")
    strengths = {}
    for run in plan.runs:
        o = run.config.objective
        strengths.setdefault(method(run), set()).add(
            {"elbo": o.beta, "tcvae": o.beta, "factor_vae": o.gamma, "dip_vae": o.lambda_od,
             "annealed_vae": o.capacity_max}[o.kind])
    assert strengths["factor_vae"] == {10.0, 20.0, 30.0, 40.0, 50.0, 100.0}
    assert strengths["annealed_vae"] == {5.0, 10.0, 25.0, 50.0, 75.0, 100.0}
    assert len(strengths) == 6 and all(len(v) == 6 for v in strengths.values())


@pytest.mark.parametrize("kind", ["elbo", "tcvae", "factor_vae", "dip_vae", "annealed_vae"])
def test_every_method_of_the_study_steps_on_the_conv_model(kind):
    """One training step of each method on disentanglement_lib's conv VAE (64 x 64 images)."""
    from run_helpers import REPO
    from vaejax import config as config_lib
    from vaejax.program import run_keys

    config = config_lib.load_config(REPO / "experiments" / "locatello2019.py",
                                    [f"objective.kind={kind}", "train.batch_size=8"])
    program = Program.build(config, (64, 64, 1), 64)
    shapes = jax.tree.map(jnp.shape, program.model.init(jax.random.key(0)))
    assert shapes["encoder"]["Dense_1"]["kernel"] == (256, 20)  # means and log-variances of 10
    hyper = program.hyper(config)
    state = program.init_state(hyper)
    x = (np.random.default_rng(0).random((8, 64, 64, 1)) > 0.8).astype(np.uint8) * 255
    new, metrics = jax.jit(program.train_step)(state, hyper, x, run_keys(0))
    assert np.isfinite(float(metrics["loss"])) and int(new.step) == 1
    assert any(np.any(a != b) for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(state.params)))
