"""The model families of the literature (VampPrior, two stochastic layers, L layers with
bottom-up or ladder inference, IAF posterior, conditional VAE), each through the normal CLI with its own experiment config on real MNIST:
it trains (validation loss falls), evaluates, draws its figures, reproduces bit for bit, and
a run inside a vmapped sweep group of three equals the same run trained alone.

The models' numerics (bounds against plain-jnp computations, prior moments, flow Jacobians,
the exact Gaussian chain) are in tests/test_models_<family>.py.
"""

import json
import textwrap

import pytest

from vaejax import cli, records, reproduce, sweep

from run_helpers import REPO, comparable

COMMON = ["data.num_train=1024", "data.num_validation=10000", "train.epochs=2", "train.batch_size=64",
          "eval.iwae_samples=10", "eval.iwae_chunk=10", "eval.num_test_examples=100",
          "eval.batch_size=100"]

FAMILIES = {
    "vampprior": ("vampprior.py", ["model.hidden_sizes=(32,)", "model.latent_dim=4",
                                   "model.num_pseudo_inputs=5"]),
    "two_layer": ("iwae_two_layer.py", ["model.latent_dims=(6,3)", "model.hidden_sizes=((32,),(16,))"]),
    # with NVAE's KL balancing during the warm-up
    "hierarchical": ("sonderby2016.py", ["model.kind=hierarchical", "model.latent_dims=(6,4,2)",
                                         "model.hidden_sizes=((32,),(16,),(8,))", "objective.warmup_steps=16",
                                         "objective.kl_balance=True"]),
    # with the training aids on: an EMA of the parameters, skipped updates, free bits per layer,
    # weight normalisation initialised on the training images
    "ladder": ("sonderby2016.py", ["model.latent_dims=(6,4,2)", "model.hidden_sizes=((32,),(16,),(8,))",
                                   "objective.warmup_steps=16", "train.ema_decay=0.9",
                                   "optimizer.skip_grad_norm=1000.0", "objective.free_bits=0.1",
                                   "model.normalization=weight_norm"]),
    "iaf": ("iaf.py", ["model.hidden_sizes=(32,)", "model.latent_dim=4", "model.flow_steps=2",
                       "model.flow_hidden_sizes=(16,)", "model.context_dim=8"]),
    "conditional": ("cvae.py", ["model.hidden_sizes=(32,)", "model.latent_dim=4"]),
}

# What each family adds to the figures and results (no family-specific code in vaejax's core).
EXTRA_FIGURES = {"vampprior": {"pseudo_inputs.png", "prior_samples.png"},
                 "conditional": {"class_samples.png"},
                 **{kind: {"prior_samples.png", "layer_samples.png"}
                    for kind in ("two_layer", "hierarchical", "ladder")}}


def quiet(*_):
    pass


def _overrides(kind, mnist_dir):
    _, shrink = FAMILIES[kind]
    return COMMON + shrink + [f"data.data_dir={mnist_dir}"]


def _three_seeds_sweep(tmp_path, kind):
    """The family's experiment config with a sweep over seeds 0, 1, 2 (one vmapped group)."""
    path = tmp_path / f"{kind}_seeds.py"
    path.write_text(textwrap.dedent(f'''
        import importlib.util
        from vaejax.sweep import product
        spec = importlib.util.spec_from_file_location("experiment", {str(REPO / "experiments" / FAMILIES[kind][0])!r})
        experiment = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(experiment)
        get_config = experiment.get_config

        def get_sweep():
            return product(seed=[0, 1, 2])
    '''))
    return path


@pytest.mark.parametrize("kind", sorted(FAMILIES))
def test_family_trains_evaluates_draws_reproduces_and_sweeps(kind, tmp_path, mnist_dir):
    experiment = REPO / "experiments" / FAMILIES[kind][0]
    overrides = _overrides(kind, mnist_dir)
    run_dir = tmp_path / "run"
    assert cli.main(["train", "--config", str(experiment), "--workdir", str(run_dir),
                     "--config.seed=1", *(f"--config.{o}" for o in overrides)]) == 0
    assert records.run_config(run_dir).model.kind == kind

    rows = records.read_metrics(run_dir)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[1]["val/neg_elbo"] < rows[0]["val/neg_elbo"]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["test/nll"] <= results["test/neg_elbo"] + 0.5  # IWAE K=10 vs one-sample ELBO
    layers = {"two_layer": 2, "hierarchical": 3, "ladder": 3}.get(kind)
    if layers:  # active units and KL per stochastic layer
        names = {f"z{i}" for i in range(1, layers + 1)}
        assert set(results["active_units_by_variable"]) == names
        assert sum(results["active_units_by_variable"].values()) == results["active_units"]
        assert set(results["test/kl_by_variable"]) == names
        assert sum(results["test/kl_by_variable"].values()) == pytest.approx(results["test/rate"], rel=1e-4)
    figures = {p.name for p in (run_dir / "figures").iterdir()}
    assert {"reconstructions.png", "latent_traversals.png", "training_curves.png"} <= figures
    assert EXTRA_FIGURES.get(kind, {"prior_samples.png"}) <= figures

    report = reproduce.reproduce(run_dir, tmp_path / "replica", log=quiet)
    assert report["match"], report["differences"]

    sweep_dir = tmp_path / "sweep"
    assert cli.main(["sweep", str(_three_seeds_sweep(tmp_path, kind)), "--workdir", str(sweep_dir),
                     *(f"--config.{o}" for o in overrides + ["eval.figures=false"])]) == 0
    rows_by_run = sweep.collect(sweep_dir)[0]
    assert sorted(r["status"] for r in rows_by_run) == ["finished"] * 3
    assert len({r["group"] for r in rows_by_run}) == 1  # the three seeds ran as one vmapped group
    member = comparable(records.read_metrics(sweep_dir / "runs" / "seed=1"))
    alone = comparable(rows)
    assert len(member) == len(alone) == 2
    for a, b in zip(member, alone):
        for key, value in b.items():
            assert a[key] == pytest.approx(value, rel=1e-5), key
    member_results = json.loads((sweep_dir / "runs" / "seed=1" / "results.json").read_text())
    assert member_results["test/nll"] == pytest.approx(results["test/nll"], rel=1e-4)


def test_the_sonderby_budget_plans_table_1s_rows_as_groups_of_three_seeds():
    """experiments/sonderby2016_budget.py: 14 rows (VAE and LVAE, 2 and 5 layers, warm-up and
    weight normalisation as table 1's columns), each its 3 seeds as one vmapped group, at the
    paper's model and optimizer and the shared 50-epoch budget."""
    from vaejax.sweep import plan as plan_lib

    plan = plan_lib.make_plan(REPO / "experiments" / "sonderby2016_budget.py")
    assert len(plan.runs) == 42 and len(plan.groups) == 14
    rows = set()
    for group in plan.groups:
        configs = [run.config for run in group.runs]
        assert sorted(c.seed for c in configs) == [0, 1, 2]
        c = configs[0]
        rows.add((c.model.kind, len(c.model.latent_dims), c.objective.beta_schedule, c.model.normalization))
        assert (c.train.epochs, c.train.batch_size, c.optimizer.learning_rate) == (50, 256, 2e-4)
        assert c.objective.warmup_steps == (5 * 234 if c.objective.beta_schedule == "linear" else 0)
    assert len(rows) == 14
    assert ("ladder", 5, "linear", "weight_norm") in rows and ("hierarchical", 2, "constant", "none") in rows
