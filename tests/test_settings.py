"""A setting that nothing the config selects reads is refused before anything is written.

It used to be dropped silently: `objective.kind=iwae` with `beta=4` trained plain IWAE and
recorded beta=4 in run.json. Each kind of component reads its own settings (the keyword
parameters of its factory), so each is tested: model, objective, optimizer, learning-rate
schedule, data. A setting holding its neutral value (`Registry.neutral`) passes.
"""

import jax
import pytest

from run_helpers import REPO, small_config, small_flags
from vaejax import cli, models, optimizers, program, registry
from vaejax import config as config_lib
from vaejax.objectives import OBJECTIVES, BETA_SCHEDULES

# (kind, overrides, what the one error line says)
IGNORED = [
    ("model", ["model.likelihood=bernoulli", "model.gaussian_logvar=-2.0"],
     "model.gaussian_logvar='-2.0' does nothing with model.likelihood='bernoulli'"),
    ("objective", ["objective.kind=iwae", "objective.num_samples=5", "objective.beta=4.0"],
     "objective.beta=4.0 does nothing with objective.kind='iwae' (it is read by objective.kind "
     "'ciwae', 'elbo' or 'tcvae'): set it to 1.0 or leave it out"),
    ("optimizer", ["optimizer.name=adam", "optimizer.weight_decay=0.1"],
     "optimizer.weight_decay=0.1 does nothing with optimizer.name='adam' (it is read by "
     "optimizer.name 'adamw'): set it to 0.0 or leave it out"),
    ("schedule", ["optimizer.schedule=cosine", "optimizer.warmup_steps=100"],
     "optimizer.warmup_steps=100 does nothing with optimizer.schedule='cosine' (it is read by "
     "optimizer.schedule 'warmup_cosine')"),
    ("data", ["data.name=cifar10", "data.data_dir=/tmp"],
     "data.data_dir='/tmp' does nothing with data.name='cifar10' (it is read by data.name "
     "'binarized_mnist', 'fashion_mnist' or 'mnist'): set it to '' or leave it out"),
]


@pytest.mark.parametrize("kind,overrides,message", IGNORED, ids=[c[0] for c in IGNORED])
def test_an_ignored_setting_is_refused_before_anything_is_written(
        tmp_path, mnist_dir, capsys, kind, overrides, message):
    workdir = tmp_path / "run"
    flags = small_flags(mnist_dir) + [f"--config.{o}" for o in overrides]
    assert cli.main(["train", *flags, "--workdir", str(workdir)]) == 2
    assert message in capsys.readouterr().err
    assert not workdir.exists()


def test_the_same_settings_where_something_reads_them_train(tmp_path, mnist_dir):
    """The control: each refused setting above is accepted by the component that reads it."""
    for overrides in (["model.likelihood=gaussian", "model.gaussian_logvar=-2.0",
                       "data.preprocessing=scale"],
                      ["objective.kind=elbo", "objective.beta=4.0"],
                      ["optimizer.name=adamw", "optimizer.weight_decay=0.1"],
                      ["optimizer.schedule=warmup_cosine", "optimizer.warmup_steps=100"]):
        config = small_config(mnist_dir)
        for override in overrides:
            config_lib.apply_override(config, *override.split("=", 1))
        program.check_new_run(config)
        models.build(config.model, (28, 28, 1))


def test_a_sweep_over_a_setting_its_objective_does_not_read_is_refused(tmp_path, mnist_dir):
    """A sweep over objective.beta with IWAE used to compile N identical groups."""
    sweep = tmp_path / "beta_iwae.py"
    sweep.write_text(
        f"from vaejax.config import load_config\n"
        f"def get_config():\n"
        f"    config = load_config({str(REPO / 'experiments' / 'default.py')!r})\n"
        f"    config.objective.kind = 'iwae'\n"
        f"    return config\n"
        f"def get_sweep():\n"
        f"    return [{{'objective.beta': b}} for b in (1.0, 2.0, 4.0)]\n")
    workdir = tmp_path / "sweep"
    assert cli.main(["sweep", str(sweep), "--workdir", str(workdir),
                     f"--config.data.data_dir={mnist_dir}", "--config.data.name=mnist"]) == 2
    assert not workdir.exists()


def test_every_registered_choice_accepts_the_default_config():
    """The neutral values agree with experiments/default.py: choosing any registered objective,
    beta schedule, optimizer or learning-rate schedule alone refuses nothing."""
    choices = [("objective.kind", OBJECTIVES), ("objective.beta_schedule", BETA_SCHEDULES),
               ("optimizer.name", optimizers.OPTIMIZERS),
               ("optimizer.schedule", optimizers.LR_SCHEDULES)]
    for field, reg in choices:
        for name in reg.names():
            config = config_lib.load_config(REPO / "experiments" / "default.py")
            config_lib.apply_override(config, field, name)
            program.check_new_run(config)


def test_a_plugin_reads_the_settings_its_signature_names(tmp_path):
    """A user's objective may add settings of its own; one that takes **kwargs reads them all."""
    (tmp_path / "my_objectives.py").write_text(
        "import dataclasses\n"
        "@dataclasses.dataclass(frozen=True)\n"
        "class Scaled:\n"
        "    scale: float = 1.0\n"
        "    def __call__(self, key, x, model, params):\n"
        "        raise NotImplementedError\n"
        "def anything(**settings):\n"
        "    return Scaled()\n")
    config = config_lib.load_config(REPO / "experiments" / "default.py")
    config.experiment_dir = str(tmp_path)
    config.objective.kind = "my_objectives:Scaled"
    config.objective.scale = 3.0
    program.check_new_run(config)
    config.objective.free_bits = 2.0
    with pytest.raises(ValueError, match=r"objective.free_bits=2.0 does nothing with "
                                         r"objective.kind='my_objectives:Scaled'"):
        program.check_new_run(config)
    config.objective.kind = "my_objectives:anything"
    program.check_new_run(config)


def test_refuse_unread_compares_settings_by_value():
    things = registry.Registry("thing", "thing.kind", neutral={"width": (1, 2), "flag": False})

    @things.register("plain")
    def plain(*, depth=1):
        del depth

    @things.register("wide")
    def wide(*, depth=1, width=(1, 2), flag=False):
        del depth, width, flag

    registry.refuse_unread("thing", {"kind": "plain", "width": [1, 2], "flag": False},
                           [(things, "plain")], always=("kind",))
    with pytest.raises(ValueError, match=r"thing.flag=0 does nothing with thing.kind='plain' "
                                         r"\(it is read by thing.kind 'wide'\)"):
        registry.refuse_unread("thing", {"kind": "plain", "flag": 0}, [(things, "plain")],
                               always=("kind",))
    with pytest.raises(ValueError, match=r"thing.colour='red' does nothing with thing.kind="
                                         r"'plain' \(nothing reads it\): leave it out"):
        registry.refuse_unread("thing", {"kind": "plain", "colour": "red"}, [(things, "plain")],
                               always=("kind",))


def test_model_sizes_are_checked_by_the_factory_that_reads_them():
    """IAF's documented flow_steps=0 (q without a flow) is allowed; a zero width is not."""
    config = config_lib.load_config(REPO / "experiments" / "iaf.py")
    config_lib.apply_override(config, "model.flow_steps", 0)
    config_lib.validate(config)
    model = models.build(config.model, (28, 28, 1))
    assert model.init(jax.random.key(0))
    config_lib.apply_override(config, "model.flow_hidden_sizes", (32, 0))
    with pytest.raises(ValueError, match=r"model.flow_hidden_sizes=\(32, 0\) must be >= 1"):
        models.build(config.model, (28, 28, 1))


def test_a_recorded_run_with_an_ignored_setting_still_builds(mnist_dir):
    """Runs recorded before the check keep loading: only a new run is checked."""
    config = small_config(mnist_dir, **{"objective.kind": "iwae", "objective.beta": 4.0})
    with pytest.raises(ValueError, match="objective.beta=4.0"):
        program.check_new_run(config)
    built = program.Program.build(config, (28, 28, 1), 1024)
    assert built.scalars == ()


def test_the_readme_table_of_objective_settings_is_what_the_objectives_read():
    """The docs say which objective reads which setting: checked against the signatures."""
    rows = {}
    for line in (REPO / "docs" / "getting-started.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`") and cells[0].endswith("`") \
                and cells[2] and ("beta" in cells[1] or cells[2] == "not read"):
            for name in cells[0].replace("`", "").split(","):
                rows[name.strip()] = {s.strip() for s in cells[1].split(",")}
    assert set(rows) == set(OBJECTIVES.names())
    for name, settings in rows.items():
        assert settings == set(OBJECTIVES.settings(name)), name
