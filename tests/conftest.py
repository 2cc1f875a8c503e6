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
