"""The documentation: the site builds strictly, every code block of README.md and docs/ runs or
resolves, and every name `vaejax` exports has a docstring.

- ```python blocks run, in order, one namespace per page (as a reader runs them top to bottom),
  from the repository root, with JAX's default rank promotion (as a reader has it); `WORKDIR` is
  a trained run. A block that is `--8<-- "path"` shows a
  repository file itself (mkdocs' snippets include it when the site is built): the file must
  exist, and its own tests run it.
- ```bash blocks: every `vaejax` command parses with vaejax's own parser, and one that trains
  (train, sweep) resolves its experiment file and overrides to a config that a new run accepts
  (`program.check_new_run`: no unread or unknown setting). Any other program must be one listed
  in `OTHER_PROGRAMS`, with where it is exercised. Then every page's vaejax commands run, in
  order, through the installed `vaejax` on tiny settings (`TINY_TRAIN`: one epoch on a few
  hundred images); the few that cannot run on a test machine are listed in `NOT_RUN` with why
  and where they are exercised instead.
"""

import inspect
import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

import pytest

import vaejax
from run_helpers import REPO
from vaejax import cli
from vaejax import config as config_lib
from vaejax import program as program_lib

PAGES = [REPO / "README.md"] + sorted(
    p for p in (REPO / "docs").rglob("*.md") if "records" not in p.parts)
# Programs other than vaejax that the docs show, and where each is exercised.
OTHER_PROGRAMS = {
    "make": "make run / make test / make docs: what CI runs (.ci/run)",
    "experiments/burda2015.sh": "the study's script: its rows are committed records (test_published.py)",
    "experiments/model_families.sh": "the study's script: its rows are committed records (test_published.py)",
    "tensorboard": "a real TensorBoard serves a sweep's events in test_events.py",
    "wandb": "W&B's own CLI (sync needs an account); the offline files are read in test_trackers.py",
    "mlflow": "MLflow's own UI; the store is read with MlflowClient in test_trackers.py",
    "pip": "installs an extra (pyproject.toml)",
    "squeue": "Slurm's own command; --submit slurm runs against a real Slurm in test_slurm.py",
    "srun": "Slurm's launcher; several processes run on 127.0.0.1 in test_multiprocess.py",
    "gcloud": "Google Cloud's CLI (TPU pods): not reachable from a test machine",
    "export": "sets a variable for the next line",
}
TRAINS = ("train", "sweep")


def _blocks(page: pathlib.Path, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", page.read_text(), re.S | re.M)


def _commands(block: str) -> list[list[str]]:
    """The command lines of a bash block, continuations joined, comments and output dropped,
    environment assignments (A=b cmd) removed."""
    joined = block.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        line = line.split(" # ")[0].split("   #")[0].strip()
        if not line or line.startswith("#"):
            continue
        words, part = shlex.split(line, comments=True) + ["&&"], []
        for word in words:
            if word != "&&":
                part.append(word)
                continue
            while part and re.match(r"^[A-Z_]+=", part[0]):
                part = part[1:]
            if part:
                out.append(part)
            part = []
    return out


@pytest.mark.parametrize("page", [p for p in PAGES if _blocks(p, "python")],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_every_python_block_runs(page, trained, monkeypatch, allow_rank_promotion):
    workdir, _, _ = trained
    monkeypatch.chdir(REPO)
    namespace = {"__name__": "docs_example", "WORKDIR": str(workdir)}
    for i, code in enumerate(_blocks(page, "python")):
        snippet = re.fullmatch(r'--8<-- "([^"]+)"\n', code)
        if snippet:
            assert (REPO / snippet.group(1)).is_file(), snippet.group(1)
            continue
        exec(compile(code, f"{page.relative_to(REPO)} (python block {i})", "exec"), namespace)


@pytest.mark.parametrize("page", [p for p in PAGES if _blocks(p, "bash")],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_every_bash_block_parses_and_resolves(page, monkeypatch):
    monkeypatch.chdir(REPO)
    parser = cli._parser()
    for block in _blocks(page, "bash"):
        for words in _commands(block):
            program = words[0].removeprefix(".venv/bin/")
            if program != "vaejax":
                assert program in OTHER_PROGRAMS, f"{page}: {' '.join(words)}"
                continue
            args, rest = parser.parse_known_args(words[1:])
            overrides = [a.removeprefix("--config.") for a in rest]
            assert all(a.startswith("--config.") for a in rest), (words, rest)
            if args.command == "sweep":
                config = config_lib.load_config(REPO / args.sweep_file, overrides)
            elif args.command == "train" and args.config:
                config = config_lib.load_config(REPO / args.config, overrides)
            else:
                continue
            config_lib.validate(config)
            program_lib.check_new_run(config)


def test_the_commands_of_a_block_are_read_as_a_shell_reads_them():
    block = ("A=1 B=2 vaejax train --config x.py \\\n    --config.a=1   # a comment\n"
             "# only a comment\nvaejax eval --workdir w && vaejax sample --workdir w\n")
    assert _commands(block) == [["vaejax", "train", "--config", "x.py", "--config.a=1"],
                                ["vaejax", "eval", "--workdir", "w"],
                                ["vaejax", "sample", "--workdir", "w"]]


def test_every_exported_name_has_a_docstring():
    """Every exported function and class (the registries are values, documented where they
    are defined)."""
    code = [name for name in vaejax.__all__
            if inspect.isfunction(getattr(vaejax, name)) or inspect.isclass(getattr(vaejax, name))]
    assert len(code) > 30
    missing = [name for name in code if not inspect.getdoc(getattr(vaejax, name))]
    assert not missing, f"exported without a docstring: {missing}"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """`mkdocs build --strict` into a temporary folder: a broken link, anchor or reference
    fails the build."""
    out = tmp_path_factory.mktemp("site") / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


@pytest.mark.slow
@pytest.mark.xdist_group("site")  # one worker builds the site once
def test_the_site_builds_strictly(site):
    """The built pages hold the API reference (from the docstrings) and the command-line
    reference (from the parser)."""
    api = (site / "api" / "index.html").read_text()
    for name in ("iwae_bound", "batch_elbo", "kl_to_standard_normal", "load_run"):
        assert f'id="vaejax.{name}"' in api, name
    cli_page = (site / "cli" / "index.html").read_text()
    for command in ("vaejax train", "vaejax sweep", "--max-group-size", "--check"):
        assert command in cli_page, command
    assert (site / "burda2015" / "nll_curve.png").is_file()
    assert (site / "index.html").is_file()


def chromium() -> str:
    """The headless browser: Debian's `chromium` (`make browser` installs it as root)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.fail("no Chromium to render the docs with: run `make browser` as root, or "
                "`apt-get install chromium`")


def browse(url: str, *, screenshot: pathlib.Path | None = None) -> str:
    """The DOM of `url` after headless Chromium has loaded it (and its scripts have run);
    with `screenshot`, also a 1280x1600 PNG of it."""
    flags = [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--window-size=1280,1600"]
    if screenshot is not None:
        done = subprocess.run(flags + [f"--screenshot={screenshot}", url], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0 and screenshot.stat().st_size > 0, done.stderr[-2000:]
    done = subprocess.run(flags + ["--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.slow
@pytest.mark.xdist_group("site")
@pytest.mark.parametrize("page, title", [("getting-started", "Getting started - vaejax"),
                                         ("api", "API - vaejax")])
def test_pages_render_in_a_real_browser(site, page, title, tmp_path):
    """Headless Chromium opens the built page: its title, a highlighted code block, the
    navigation, and (Getting started) a figure whose PNG is in the site; the screenshot is
    not blank. `make docs-screenshots` writes the committed ones (docs/assets/screenshots)."""
    import matplotlib.image  # noqa: PLC0415

    shot = tmp_path / f"{page}.png"
    dom = browse((site / page / "index.html").as_uri(), screenshot=shot)
    assert f"<title>{title}</title>" in dom
    assert 'class="highlight"' in dom or "doc-signature" in dom  # a rendered code block
    assert 'class="md-nav' in dom                                # material's navigation, built by its JS
    if page == "getting-started":
        images = re.findall(r'<img[^>]+src="([^"]+\.png)"', dom)
        assert images and all((site / page / src).resolve().is_file() for src in images), images
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (1600, 1280) and pixels[..., :3].std() > 0.05  # not a blank page


# What "tiny" means for a documented command run here: a few hundred images, one epoch.
# The documented commands that are not run here, each with why and where it is exercised
# instead: (page, the command's first words) -> reason. Every entry must still match a command.
NOT_RUN = {
    ("docs/howto/datasets.md", "vaejax data fetch cifar10"):
        "downloads CIFAR-10: needs a network (the IDX/pickle readers are tested on files)",
    ("docs/howto/sweeps.md", "vaejax sweep experiments/latent_kl_sweep.py --workdir sweeps/latent_kl --submit"):
        "submits to Slurm: a real Slurm runs --submit slurm in test_slurm.py (make slurm-test)",
    ("docs/howto/sweeps.md", "vaejax sweep-report sweeps/latent_kl"):
        "reads the Slurm submission above; sweep-report runs on the smoke sweep on this page",
    ("docs/studies/index.md", "vaejax record runs/burda/iwae_k5"):
        "records the study's 3280-epoch run; its committed record is checked in test_published.py",
    ("docs/studies/index.md", "vaejax sweep experiments/sonderby2016_budget.py"):
        "trains 42 deep models (14 groups, each compiled): its plan is tested in "
        "test_model_families.py, and both inference models train, sweep and reproduce there",
    ("README.md", "vaejax sweep experiments/locatello2019.py"):
        "renders all of dSprites and trains 108 conv models; the study's plan and one step of each "
        "method are tested in test_objectives_disentangling.py",
    ("docs/studies/index.md", "vaejax sweep experiments/locatello2019.py"):
        "the README's CPU-budget command for the same study (above)",
}
# Appended to every documented train, sweep and eval (later settings win), so that each trains
# for one epoch on a few hundred images and evaluates on 64.
TINY_TRAIN = ["--config.data.num_train=256", "--config.data.num_validation=64",
              "--config.train.epochs=1"]
TINY_EVAL = ["--config.eval.num_test_examples=64", "--config.eval.iwae_chunk=50"]
# A sweep's members (75 in the latent x beta sweep) and a training evaluate with fewer draws
# and no figures; getting-started's run keeps both, as its page shows them.
FEW_DRAWS = ["--config.eval.iwae_samples=100", "--config.eval.figures=False"]
TINY_AIS = ["--config.eval.ais_steps=4", "--config.eval.ais_chains=2",
            "--config.eval.ais_num_examples=2", "--config.eval.gap_steps=3"]


def _runnable(page: pathlib.Path) -> list[list[str]]:
    """The page's vaejax commands in order, less those in NOT_RUN."""
    name = str(page.relative_to(REPO))
    out = []
    for block in _blocks(page, "bash"):
        for words in _commands(block):
            if words[0].removeprefix(".venv/bin/") != "vaejax":
                continue
            line = " ".join(words)
            if not any(p == name and line.startswith(prefix) for p, prefix in NOT_RUN):
                out.append(words)
    return out


def test_every_command_left_out_is_still_documented():
    documented = {(str(p.relative_to(REPO)), " ".join(w))
                  for p in PAGES for b in _blocks(p, "bash") for w in _commands(b)}
    for page, prefix in NOT_RUN:
        assert any(p == page and line.startswith(prefix) for p, line in documented), (page, prefix)


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if _runnable(p)],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_every_documented_command_runs(page, tmp_path, trained, mnist_dir, binarized_mnist_dir,
                                       fashion_mnist_dir):
    """Each page's vaejax commands, in order, as a reader types them, through the installed
    `vaejax` in a fresh folder that has the repository's experiments and docs: trainings and
    sweeps for one epoch on a few hundred images (TINY_TRAIN), evaluations on 64 images. A
    command that reads a run no command on its page made (`--workdir runs/x`) gets a trained
    one. Trackers run offline."""
    for folder in ("experiments", "docs"):
        shutil.copytree(REPO / folder, tmp_path / folder, symlinks=True)
    shutil.copy(REPO / "README.md", tmp_path / "README.md")
    vaejax_bin = pathlib.Path(sys.executable).parent / "vaejax"
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true",
           "WANDB_DIR": str(tmp_path), "PYTHONPATH": str(REPO)}
    for words in _runnable(page):
        args = words[1:]
        workdir = args[args.index("--workdir") + 1] if "--workdir" in args else None
        if args[0] in ("eval", "sample") and not (tmp_path / workdir).exists():
            shutil.copytree(trained[0], tmp_path / workdir)
        extra = {"train": TINY_TRAIN + TINY_EVAL + FEW_DRAWS * (page.name != "getting-started.md"),
                 "sweep": TINY_TRAIN + TINY_EVAL + FEW_DRAWS, "eval": TINY_EVAL}.get(args[0], [])
        if args[0] == "sweep" and "--dry-run" in args:
            extra = TINY_TRAIN
        if "--config.eval.disentanglement=True" in args:  # scores need the whole factor grid
            extra = [a for a in extra if not a.startswith("--config.data.num_")]
        if args[0] == "eval" and any(a.startswith("--config.eval.ais") for a in args):
            extra = extra + TINY_AIS
        done = subprocess.run([str(vaejax_bin), *args, *extra], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, (" ".join(words), done.stdout[-3000:], done.stderr[-3000:])
        if args[0] == "reproduce":
            assert "every metric matches" in done.stdout, [
                line for line in done.stdout.splitlines() if line.startswith("reproduce:")]
        if args[0] == "train":
            assert json.loads((tmp_path / workdir / "results.json").read_text())["test/neg_elbo"] > 0
    if page.name == "getting-started.md":
        results = json.loads((tmp_path / "runs/x/results.json").read_text())
        assert results["iwae_samples"] == 5000 and results["latent_dim"] == 8
        assert (tmp_path / "runs/x/figures").is_dir()
        assert (tmp_path / "runs/x-again/results.json").is_file()
