"""Name -> callable registries, and `"module:attribute"` for the user's own code.

A registry is a dict filled where its callables are defined (`@MODELS.register("mlp")`).
Every config field that names a model, objective, schedule, optimizer or preprocessing is
looked up in one, so a new one is a new file, not a new `elif`. A name holding a colon,
`"my_prior:MixturePriorVAE"`, imports `my_prior` (with the experiment file's folder on
`sys.path` while it is imported) and takes its attribute `MixturePriorVAE`.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from typing import Any, Callable, Mapping


class Registry:
    """The named callables of one kind (`what`), selected by the config field `field`."""

    def __init__(self, what: str, field: str):
        self.what, self.field = what, field
        self._entries: dict[str, Callable] = {}

    def register(self, name: str):
        """Decorator: `@REGISTRY.register("name")` above a function or class."""
        def add(fn):
            if name in self._entries and self._entries[name] is not fn:
                raise ValueError(f"{self.what} {name!r} is registered twice")
            self._entries[name] = fn
            return fn
        return add

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def get(self, name: str, *, search_path: str | None = None) -> Callable:
        """The callable called `name`: registered, or `"module:attribute"`."""
        if ":" in name:
            return import_attribute(name, search_path=search_path, field=self.field)
        if name not in self._entries:
            raise ValueError(
                f"Unknown {self.field} {name!r}; choose one of {self.names()} or give your own "
                f"as \"module:attribute\" (the module is imported from the experiment's folder).")
        return self._entries[name]


def import_attribute(spec: str, *, search_path: str | None = None, field: str = "name") -> Any:
    """`"package.module:attribute"` -> the attribute, importing with `search_path` first on
    sys.path (the experiment file's folder) for the duration of the import."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{field} {spec!r} must look like \"module:attribute\".")
    added = bool(search_path) and search_path not in sys.path
    if added:
        sys.path.insert(0, search_path)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        where = f" (searched {search_path} and sys.path)" if search_path else ""
        raise ValueError(f"{field} {spec!r}: cannot import {module_name!r}{where}: {error}") from None
    finally:
        if added:
            sys.path.remove(search_path)
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ValueError(f"{field} {spec!r}: module {module_name!r} ({module.__file__}) has no "
                         f"attribute {attribute!r}.") from None


def call_with_fields(fn: Callable, fields: Mapping[str, Any], *, what: str,
                     only_accepted: bool = False, **extra) -> Any:
    """`fn(**extra, **fields)`, with a readable error naming `fn`'s signature when the fields
    do not fit. With `only_accepted`, fields `fn` does not name are left out (an objective
    reads the `config.objective` fields it needs; the others belong to other objectives)."""
    signature = inspect.signature(fn)
    if only_accepted and not any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        fields = {k: v for k, v in fields.items() if k in signature.parameters}
    try:
        signature.bind(**extra, **fields)
    except TypeError as error:
        raise ValueError(f"{what}: {error}; {getattr(fn, '__name__', fn)} takes "
                         f"{signature}") from None
    return fn(**extra, **fields)
