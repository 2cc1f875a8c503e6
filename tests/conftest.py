"""Shared test settings: catch silent broadcasting, and locate the real datasets."""
import os
import pathlib

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def _real_dir(env_var: str, default: pathlib.Path) -> pathlib.Path:
    return pathlib.Path(os.environ.get(env_var, default))


def require_real_data(path: pathlib.Path, what: str) -> pathlib.Path:
    """Returns `path` if it holds data; on CI (VAEJAX_REQUIRE_REAL_DATA=1) a missing copy fails."""
    if path.exists() and any(path.iterdir()):
        return path
    message = f"{what} not found at {path}"
    if os.environ.get("VAEJAX_REQUIRE_REAL_DATA") == "1":
        pytest.fail(message + " (VAEJAX_REQUIRE_REAL_DATA=1: real data is required here)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def mnist_dir() -> pathlib.Path:
    return require_real_data(_real_dir("VAEJAX_MNIST_DIR", SHARED / "data" / "mnist"), "MNIST IDX files")


@pytest.fixture(scope="session")
def binarized_mnist_dir() -> pathlib.Path:
    return require_real_data(
            _real_dir("VAEJAX_BINARIZED_MNIST_DIR", SHARED / "data" / "binarized_mnist"), "binarized MNIST")


@pytest.fixture(scope="session")
def fashion_mnist_dir() -> pathlib.Path:
    return require_real_data(pathlib.Path("/usr/share/datasets/fashion-mnist"), "Fashion-MNIST (Debian package)")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session caches datasets in its own folder unless VAEJAX_CACHE is set."""
    if "VAEJAX_CACHE" not in os.environ:
        monkeypatch.setenv("VAEJAX_CACHE", str(tmp_path_factory.getbasetemp() / "vaejax-cache"))


@pytest.fixture
def allow_rank_promotion():
    """distrax and TFP broadcast implicitly inside; tests of them allow it (vaejax does not)."""
    with jax.numpy_rank_promotion("allow"):
        yield


@pytest.fixture(scope="session")
def trained(tmp_path_factory, mnist_dir):
    """One short real run with evaluation and figures, shared by the tests that read it."""
    from run_helpers import small_config  # noqa: PLC0415
    from vaejax import train  # noqa: PLC0415

    workdir = tmp_path_factory.mktemp("run") / "run"
    config = small_config(mnist_dir, **{"eval.figures": True, "train.epochs": 3,
                                        "data.num_train": 4096})
    result = train.train(config, workdir, log=lambda *_: None)
    return workdir, config, result



@pytest.fixture(scope="session", autouse=True)
def _compilation_cache(tmp_path_factory):
    """Identical programs compiled by several tests (each `train` run builds its own Program;
    `reproduce` trains a run again) hit JAX's persistent cache, shared by the xdist workers
    and the processes they start.
    The cached executable is the same one, so no number changes."""
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
             "jax_persistent_cache_min_entry_size_bytes")
    old = {name: getattr(jax.config, name) for name in names}
    values = {"jax_compilation_cache_dir": str(tmp_path_factory.getbasetemp().parent / "jax-cache"),
              "jax_persistent_cache_min_compile_time_secs": 0,
              "jax_persistent_cache_min_entry_size_bytes": 0}
    # and the `vaejax` processes the tests start (documented commands, faults, Slurm jobs)
    old_env = {name.upper(): os.environ.get(name.upper()) for name in names}
    for name, value in values.items():
        jax.config.update(name, value)
        os.environ[name.upper()] = str(value)
    yield
    for name, value in old.items():
        jax.config.update(name, value)
    for name, value in old_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
