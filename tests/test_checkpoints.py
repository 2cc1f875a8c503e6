"""`vaejax.checkpoints`: orbax checkpoints restored into a structure, concrete or abstract."""

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np

from vaejax import checkpoints


def test_save_restore_keep_and_abstract_targets(tmp_path):
    state = {"w": jnp.arange(6.0).reshape(2, 3), "step": jnp.int32(4)}
    manager = checkpoints.Manager(tmp_path, keep=2)
    for epoch in (1, 2, 3):
        manager.save(epoch, jax.tree.map(lambda a: a + epoch, state))
    assert manager.epochs() == [2, 3] and manager.latest_epoch() == 3
    concrete = manager.restore(3, state)
    abstract = manager.restore(3, jax.eval_shape(lambda: state))  # what load_run passes
    manager.close()
    for restored in (concrete, abstract):
        np.testing.assert_array_equal(restored["w"], state["w"] + 3)
        assert int(restored["step"]) == 7


def test_keep_every_keeps_those_epochs_for_good(tmp_path):
    """The last `keep`, plus every epoch `keep_every` divides: a learning curve's checkpoints."""
    manager = checkpoints.Manager(tmp_path, keep=2, keep_every=4)
    for epoch in range(1, 14):
        manager.save(epoch, {"w": jnp.float32(epoch)})
    assert manager.epochs() == [4, 8, 12, 13]
    assert float(manager.restore(4, {"w": jnp.float32(0)})["w"]) == 4.0
    manager.close()


def test_a_failed_restores_reads_finalized_later_are_dropped_and_nothing_else():
    """After a restore failed (and was reported), its TensorStore reads' coroutines may be
    finalized long after, raising the same damage again as "Exception ignored in ...": while
    the process runs, or as the interpreter shuts down. Both are dropped; an unrelated error
    from a finalized coroutine is still printed."""
    script = textwrap.dedent("""
        import gc
        import types
        from vaejax import checkpoints
        checkpoints._drop_failed_restore_noise()

        @types.coroutine
        def pending_read():
            yield

        async def _read_array_index_and_device_put(message):  # as orbax's serialization.py
            try:
                await pending_read()
            except BaseException as error:  # closing it (GeneratorExit) raises this too
                raise Exception(message) from error

        def suspended(message):  # in its read, as orbax's are when a restore fails
            reader = _read_array_index_and_device_put(message)
            reader.send(None)
            return reader

        for message in ("Encountered error while reading array index: (slice(0, 4, 1),).",
                        "an unrelated failure"):
            reader = suspended(message)
            del reader  # finalized now: closing it raises
            gc.collect()
        # finalized only as the interpreter shuts down, when this module's globals are gone
        left_over = suspended("Encountered error while reading array index: (slice(0, 8, 1),).")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True)
    assert done.stderr.count("Exception ignored in") == 1, done.stderr  # the unrelated one
    assert "an unrelated failure" in done.stderr and "reading array index" not in done.stderr
