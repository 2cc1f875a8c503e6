"""`vaejax.published`: records of published runs, pages generated from them, and `--check`."""

import json
import pathlib
import shutil
import sys

import pytest

from vaejax import cli, plots, published

from run_helpers import REPO, small_flags

STUDIES = sorted(p.parent for p in (REPO / "docs").glob("*/report.py"))

TOY_REPORT = '''
from vaejax import plots

def render(records, out_dir):
    rows = [f"| {name} | {r.results['test/nll']:.3f} |" for name, r in records.items()]
    (out_dir / "results.md").write_text("\\n".join(["| run | NLL |", "|---|---:|", *rows]) + "\\n")
    plots.compare_curves({n: r.curve() for n, r in records.items()}, out_dir / "nll.png",
                         key="test/nll", ylabel="NLL")
    return {"table": rows[0] + "\\n"}
'''


@pytest.mark.parametrize("study", STUDIES, ids=[s.name for s in STUDIES])
def test_every_published_study_is_current(study):
    """What CI proves: each study's records resolve to the documented commands' configs, and
    the committed page, figures and README blocks are what the records generate."""
    problems = published.check(study.relative_to(REPO), repo=REPO, readme=REPO / "README.md")
    assert problems == [], "\n".join(problems)


@pytest.fixture
def scratch(tmp_path, mnist_dir, monkeypatch):
    """A scratch checkout: experiments/, a toy study with one real recorded run, a README."""
    root = tmp_path / "repo"
    shutil.copytree(REPO / "experiments", root / "experiments")
    study = root / "docs" / "toy"
    study.mkdir(parents=True)
    (study / "report.py").write_text(TOY_REPORT)
    (root / "README.md").write_text("# x\n<!-- report docs/toy:table -->\nold\n<!-- /report -->\n")
    monkeypatch.chdir(root)
    argv = ["train", "--workdir", str(tmp_path / "run"),
            *small_flags(mnist_dir, **{"train.epochs": 1})]
    argv[argv.index("--config") + 1] = "experiments/default.py"
    monkeypatch.setattr(sys, "argv", ["vaejax", *argv])
    assert cli.main(argv) == 0
    assert cli.main(["record", str(tmp_path / "run"), "docs/toy/records/small"]) == 0
    assert cli.main(["report", "docs/toy"]) == 0
    return root


def test_a_record_regenerates_its_page_and_checks_clean(scratch, capsys):
    record = published.read_records("docs/toy")["small"]
    assert record.command["experiment"] == "experiments/default.py"
    assert "train.epochs=1" in record.command["overrides"]
    assert record.run["hardware"]["cores"] >= 1 and record.train["epochs"] == 1
    assert "<!-- report docs/toy:table -->\n| small |" in (scratch / "README.md").read_text()
    assert plots.read_content_digest("docs/toy/nll.png") is not None
    capsys.readouterr()
    assert cli.main(["report", "--check", "docs/toy"]) == 0
    assert "current" in capsys.readouterr().out


def test_a_changed_default_fails_the_check_naming_the_key(scratch, capsys):
    default = scratch / "experiments" / "default.py"
    default.write_text(default.read_text().replace("config.optimizer.eps = 1e-8",
                                                   "config.optimizer.eps = 1e-7"))
    assert cli.main(["report", "--check", "docs/toy"]) == 1
    out = capsys.readouterr().out
    assert "optimizer.eps: recorded 1e-08, resolved today 1e-07" in out


def test_a_changed_record_fails_page_figure_and_readme(scratch):
    path = scratch / "docs/toy/records/small/results.json"
    results = json.loads(path.read_text())
    results["test/nll"] += 1.0
    path.write_text(json.dumps(results))
    problems = "\n".join(published.check("docs/toy"))
    assert "docs/toy/results.md: differs" in problems
    assert "docs/toy/nll.png: the figure shows other content" in problems
    assert "block docs/toy:table differs" in problems


def test_a_broken_record_is_named(scratch):
    run = scratch / "docs/toy/records/small/run.json"
    record = json.loads(run.read_text())
    del record["seed"]
    run.write_text(json.dumps(record))
    assert published.check("docs/toy") == ["docs/toy/records/small/run.json: missing field(s) ['seed']"]
    run.write_text("{not json")
    assert "run.json: cannot be read" in published.check("docs/toy")[0]
    (scratch / "docs/toy/records/small/train.json").unlink()
    assert published.check("docs/toy") == ["docs/toy/records/small/train.json: missing"]


def test_a_record_of_another_run_is_not_overwritten(scratch, tmp_path, mnist_dir, monkeypatch):
    argv = ["train", "--workdir", str(tmp_path / "other"),
            *small_flags(mnist_dir, **{"train.epochs": 1, "model.latent_dim": 3})]
    monkeypatch.setattr(sys, "argv", ["vaejax", *argv])
    assert cli.main(argv) == 0
    before = (scratch / "docs/toy/records/small/run.json").read_text()
    with pytest.raises(published.RecordError, match="records another run.*model.latent_dim"):
        published.write_record(tmp_path / "other", "docs/toy/records/small")
    assert (scratch / "docs/toy/records/small/run.json").read_text() == before


def test_a_row_the_report_does_not_know_is_refused(tmp_path):
    """A study's report names its rows (KNOWN_ROWS): a record of any other row is refused before
    the page is written, naming it, so a stray record never silently drops out of a page."""
    study = tmp_path / "rainforth2018"
    shutil.copytree(REPO / "docs" / "rainforth2018", study)
    report = study / "report.py"
    report.write_text(report.read_text().replace("KNOWN_ROWS = tuple(ROWS)",
                                                 'KNOWN_ROWS = ("iwae", "miwae", "piwae")'))
    with pytest.raises(published.RecordError, match=r"rows \['ciwae'\] are not among"):
        published.render(study, out_dir=tmp_path / "out")
    assert not (tmp_path / "out" / "results.md").exists()


def test_changing_iwae_mnist_batch_size_fails_every_study_built_on_it(tmp_path):
    """The issue's acceptance, in a scratch copy of the repository's studies."""
    root = tmp_path / "clone"
    shutil.copytree(REPO / "experiments", root / "experiments")
    shutil.copytree(REPO / "docs", root / "docs")
    shutil.copy(REPO / "README.md", root / "README.md")
    path = root / "experiments" / "iwae_mnist.py"
    path.write_text(path.read_text().replace("config.train.batch_size = 100",
                                             "config.train.batch_size = 20"))
    def reads_its_batch_size(command: dict) -> bool:  # the file's, not one the command sets
        return "iwae_mnist" in command["experiment"] and not any(
            o.startswith("train.batch_size=") for o in command["overrides"])

    built_on = {s.name for s in STUDIES if any(
        reads_its_batch_size(json.loads(c.read_text()))
        for c in (s / "records").glob("*/command.json"))}
    assert built_on, "some study must be built on experiments/iwae_mnist.py"
    for study in STUDIES:
        problems = published.check(pathlib.Path("docs") / study.name, repo=root,
                                   readme=root / "README.md")
        drift = [p for p in problems if "train.batch_size: recorded 100, resolved today 20" in p]
        assert bool(drift) == (study.name in built_on), (study.name, problems)


def test_a_sweep_runs_record_resolves_from_the_sweep_file_and_its_point(tmp_path, mnist_dir,
                                                                         monkeypatch):
    """A sweep run's documented command is the sweep file plus the run's point of the sweep:
    the check resolves it, and a changed point in the sweep file is named."""
    root = tmp_path / "repo"
    (root / "experiments").mkdir(parents=True)
    shutil.copy(REPO / "experiments" / "default.py", root / "experiments" / "default.py")
    sweep_file = root / "experiments" / "tiny_sweep.py"
    sweep_file.write_text(
        "from vaejax.config import sibling\n\n"
        "def get_config():\n"
        "    config = sibling(__file__, 'default').get_config()\n"
        f"    config.data.name, config.data.data_dir = 'mnist', {str(mnist_dir)!r}\n"
        "    config.data.num_train, config.data.num_validation = 256, 10000\n"
        "    config.model.hidden_sizes, config.model.latent_dim = (16,), 2\n"
        "    config.train.epochs, config.train.batch_size = 1, 64\n"
        "    config.eval.iwae_samples, config.eval.num_test_examples = 0, 100\n"
        "    config.eval.figures = False\n"
        "    return config\n\n"
        "def get_sweep():\n"
        "    return [{'objective.beta': 0.5}, {'objective.beta': 2.0}]\n")
    monkeypatch.chdir(root)
    argv = ["sweep", "experiments/tiny_sweep.py", "--workdir", str(tmp_path / "sweep")]
    monkeypatch.setattr(sys, "argv", ["vaejax", *argv])
    assert cli.main(argv) == 0
    (run,) = [p for p in (tmp_path / "sweep" / "runs").iterdir()
              if json.loads((p / "run.json").read_text())["config"]["objective"]["beta"] == 2.0]
    study = root / "docs" / "toy"
    study.mkdir(parents=True)
    (study / "report.py").write_text("def render(records, out_dir):\n    return {}\n")
    published.write_record(run, study / "records" / "beta2", repo=root)
    command = published.read_records(study)["beta2"].command
    assert command["experiment"] == "experiments/tiny_sweep.py"
    assert command["overrides"] == ["objective.beta=2.0"]
    assert published.check("docs/toy", repo=root, readme=root / "README.md") == []
    sweep_file.write_text(sweep_file.read_text().replace("config.train.epochs, config.train.batch_size = 1, 64",
                                                         "config.train.epochs, config.train.batch_size = 1, 32"))
    problems = published.check("docs/toy", repo=root, readme=root / "README.md")
    assert any("train.batch_size: recorded 64, resolved today 32" in p for p in problems), problems


def test_hardware_of_names_each_machine_once():
    """Records of one CPU, some from before run.json recorded the cores used: one entry."""
    def record(cpu, cores, used):
        hardware = {"cpu": cpu, "cores": cores} | ({} if used is ... else {"cores_used": used})
        return published.Record("r", pathlib.Path("."), {}, {"hardware": hardware}, None, [], {})

    xeon = "Intel(R) Xeon(R) Processor"
    assert published.hardware_of({"a": record(xeon, 2, None), "b": record(xeon, 2, 1)}) == \
        f"{xeon} (2 cores, 1 used where recorded)"
    assert published.hardware_of({"a": record(xeon, 2, 1), "b": record(xeon, 2, 1)}) == f"{xeon} (2 cores, 1 used)"
    assert published.hardware_of({"a": record(xeon, 2, ...), "b": record("EPYC", 64, 2)}) == \
        f"EPYC (64 cores, 2 used); {xeon} (2 cores)"
