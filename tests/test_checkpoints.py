"""`vaejax.checkpoints`: orbax checkpoints restored into a structure, concrete or abstract."""

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
