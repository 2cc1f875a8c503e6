"""Tests for vaejax.data.cache: round trips, atomic writes (also under SIGKILL), bad entries."""
import os
import pathlib
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from data_helpers import quiet, small_arrays, write_idx_folder

from vaejax import data


def test_cache_round_trips_fast_and_leaves_no_temp_files(mnist_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("VAEJAX_CACHE", str(tmp_path / "cache"))
    lines = []
    first = data.load("mnist", data_dir=mnist_dir, log=lines.append)
    assert first.source == f"idx:{mnist_dir.resolve()}"
    assert lines[0] == f"data: mnist from {first.source}"
    start = time.perf_counter()
    second = data.load("mnist", data_dir=mnist_dir, log=lines.append)
    assert time.perf_counter() - start < 1.0
    assert second.source == f"cache:{first.cache_path} (from {first.source})"
    assert lines[-1] == f"data: mnist from {second.source}"
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        a, b = getattr(first, field), getattr(second, field)
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    cached = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert cached == [pathlib.Path(first.cache_path).name]              # no temp files left


def test_cache_write_is_atomic(tmp_path, monkeypatch):
    monkeypatch.setenv("VAEJAX_CACHE", str(tmp_path / "cache"))
    write_idx_folder(tmp_path / "idx", small_arrays())

    def killed_mid_write(file, **arrays):
        file.write(b"PK\x03\x04 half an npz")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        data.load(f"idx:{tmp_path / 'idx'}", log=quiet)
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_kill_mid_write_leaves_no_cache_file(tmp_path, monkeypatch):
    write_idx_folder(tmp_path / "idx", small_arrays())
    script = textwrap.dedent(f"""
        import os, signal
        import numpy as np
        from vaejax import data

        def killed_mid_write(file, **arrays):
            file.write(b"PK\\x03\\x04 half an npz")
            file.flush()
            os.kill(os.getpid(), signal.SIGKILL)

        np.savez = killed_mid_write
        data.load("idx:{tmp_path / 'idx'}")
    """)
    env = dict(os.environ, VAEJAX_CACHE=str(tmp_path / "cache"), JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            timeout=120)
    assert result.returncode == -9, result.stderr
    assert [p.suffix for p in (tmp_path / "cache").iterdir()] == [".tmp"]   # the temp file only
    monkeypatch.setenv("VAEJAX_CACHE", str(tmp_path / "cache"))
    assert data.load(f"idx:{tmp_path / 'idx'}", log=quiet).source.startswith("idx:")
    assert data.load(f"idx:{tmp_path / 'idx'}", log=quiet).source.startswith("cache:")


def test_unreadable_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("VAEJAX_CACHE", str(tmp_path / "cache"))
    arrays = small_arrays()
    write_idx_folder(tmp_path / "idx", arrays)
    path = pathlib.Path(data.load(f"idx:{tmp_path / 'idx'}", log=quiet).cache_path)
    path.write_bytes(b"garbage")
    ds = data.load(f"idx:{tmp_path / 'idx'}", log=quiet)
    assert ds.source.startswith("idx:")
    np.testing.assert_array_equal(ds.test_labels, arrays["test_labels"])
    assert data.load(f"idx:{tmp_path / 'idx'}", log=quiet).source.startswith("cache:")
