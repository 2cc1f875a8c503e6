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
from typing import Any, Callable, Iterable, Mapping, Sequence


class Registry:
    """The named callables of one kind (`what`), selected by the config field `field`.

    `neutral`: for settings of the config section that only some entries read, the value at
    which an entry that does not read it loses nothing (`refuse_unread`): e.g. objective.beta
    = 1.0 for IWAE, which has no KL weight. `supplied`: parameters the program passes itself
    (e.g. `dataset_size`), which are not settings. `implied`: settings that an entry reading
    another one reads too (an objective with a `beta` follows `beta_schedule`).
    """

    def __init__(self, what: str, field: str, *, neutral: Mapping[str, Any] | None = None,
                 supplied: tuple[str, ...] = (), implied: Mapping[str, tuple[str, ...]] | None = None):
        self.what, self.field = what, field
        self.neutral = dict(neutral or {})
        self.supplied = supplied
        self.implied = dict(implied or {})
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


    def settings(self, name: str, *, search_path: str | None = None) -> frozenset[str] | None:
        """The config settings the entry `name` reads: the keyword parameters of its signature
        (less `supplied`), its traced `scalars` (objectives) and what they imply; None for one
        that takes `**kwargs` (it reads whatever it is given)."""
        fn = self.get(name, search_path=search_path)
        parameters = inspect.signature(fn).parameters
        if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            return None
        named = {n for n, p in parameters.items()
                 if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        named |= set(getattr(fn, "scalars", ()))
        named |= {i for n in list(named) for i in self.implied.get(n, ())}
        return frozenset(named - set(self.supplied))


def refuse_unread(section: str, fields: Mapping[str, Any],
                  choices: Sequence[tuple[Registry, str]], *, always: Iterable[str] = (),
                  search_path: str | None = None) -> None:
    """Raises ValueError naming every setting of `config.<section>` (`fields`) that nothing
    the config selects reads, unless it holds its neutral value.

    `choices`: (registry, selected name) pairs whose entries read this section's settings,
    e.g. ((OBJECTIVES, "iwae"),); `always`: settings the program itself reads. The message
    names, for each setting, the entries that would read it and its neutral value.
    """
    read, neutral = set(always), {}
    for reg, name in choices:
        settings = reg.settings(name, search_path=search_path)
        if settings is None:
            return
        read |= settings
        neutral.update(reg.neutral)
    problems = []
    for key, value in fields.items():
        if key in read or (key in neutral and _same(value, neutral[key])):
            continue
        readers = {reg: [n for n in reg.names() if key in (reg.settings(n) or ())]
                   for reg, _ in choices}
        readers = {reg: names for reg, names in readers.items() if names}
        chosen = " and ".join(f"{reg.field}={name!r}" for reg, name in choices
                              if reg in readers or not readers)
        where = "; ".join(f"{reg.field} {_either(names)}" for reg, names in readers.items())
        where = f"it is read by {where}" if where else "nothing reads it"
        fix = f"set it to {neutral[key]!r} or leave it out" if key in neutral else "leave it out"
        problems.append(f"{section}.{key}={value!r} does nothing with {chosen} ({where}): {fix}")
    if problems:
        raise ValueError("Refused, nothing was written: " + "; ".join(problems) + ".")


def _either(names: list[str]) -> str:
    quoted = [repr(n) for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _same(a, b) -> bool:
    """Equal as settings: a tuple and a list of the same values are the same."""
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b


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
