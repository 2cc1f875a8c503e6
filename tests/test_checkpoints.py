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
