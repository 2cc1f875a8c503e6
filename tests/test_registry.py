"""`vaejax.registry`: names and "module:attribute" resolve, with errors that say what to do."""

import sys

import pytest

from vaejax import registry


def test_registered_names_and_module_paths(tmp_path):
    things = registry.Registry("thing", "thing.kind")

    @things.register("a")
    def make_a():
        return "a"

    assert things.get("a") is make_a and things.names() == ["a"]
    with pytest.raises(ValueError, match="registered twice"):
        things.register("a")(lambda: None)
    with pytest.raises(ValueError, match=r"Unknown thing.kind 'b'; choose one of \['a'\].*module:attribute"):
        things.get("b")
    (tmp_path / "user_things.py").write_text("def make(): return 'user'\n")
    assert things.get("user_things:make", search_path=str(tmp_path))() == "user"
    assert str(tmp_path) not in sys.path  # only on sys.path while importing
    with pytest.raises(ValueError, match="cannot import 'nowhere_module'"):
        things.get("nowhere_module:make", search_path=str(tmp_path))
    with pytest.raises(ValueError, match="has no attribute 'missing'"):
        things.get("user_things:missing", search_path=str(tmp_path))
    with pytest.raises(ValueError, match="must look like"):
        things.get(":make")


def test_call_with_fields_names_the_signature():
    def factory(*, image_shape, width=3):
        return image_shape, width

    assert registry.call_with_fields(factory, {"width": 4}, what="w", image_shape=(2,)) == ((2,), 4)
    with pytest.raises(ValueError, match=r"w: .*depth.*factory takes \(\*, image_shape, width=3\)"):
        registry.call_with_fields(factory, {"depth": 4}, what="w", image_shape=(2,))
    # only_accepted: fields for other callables are left out
    assert registry.call_with_fields(factory, {"depth": 4}, what="w", only_accepted=True,
                                     image_shape=(2,)) == ((2,), 3)
