"""The facts a description needs about diffusers classes, without importing diffusers when it can.

Each answer comes from diffusers' source (core.diffusers_source: no torch, a few ms) when the source says
it plainly, else from diffusers itself, imported (torch and all: seconds), exactly as loading asks it.
Both give the same answers (tests/test_diffusers_source.py); the source is only the fast way.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Mapping

from ..errors import InputError
from . import diffusers_source as source


def check_class(name: object, base: str, where: Path) -> None:
    """InputError unless `name` is a class that ships with diffusers and derives from `base`: the same
    rule and messages as diffusers_class, which imports it."""
    if isinstance(name, str) and name.isidentifier():
        found = source.find_class(name)
        verdict = source.derives_from(found, base) if found is not None else None
        if verdict is True:
            return
        if verdict is False or (found is None and source.is_exported(name) is False):
            raise InputError(f"{where} names unknown class '{name}' (not a diffusers {base})")
    diffusers_class(name, base, where)  # what the source left open: ask diffusers (custom code, missing libraries ...)


def diffusers_class(name: object, base: str, where: Path):
    """A class that ships with diffusers and derives from `base`, imported; anything else is refused.
    Loading uses it (it needs the class itself)."""
    if not isinstance(name, str) or not name.isidentifier():
        raise InputError(f"{where} names class {name!r}: custom code is never run; only diffusers classes load")
    import diffusers

    cls = getattr(diffusers, name, None)
    base_cls = getattr(diffusers, base)
    backends = getattr(cls, "_backends", None)
    if cls is not None and backends:  # diffusers' placeholder for a class whose libraries are missing
        raise InputError(
            f"{where} names '{name}', which needs {', '.join(backends)} installed (pip install {' '.join(backends)})"
        )
    if cls is None or not isinstance(cls, type) or not issubclass(cls, base_cls):
        raise InputError(f"{where} names unknown class '{name}' (not a diffusers {base})")
    return cls


def _imported(name: str):
    import diffusers

    return getattr(diffusers, name)


def config_with_defaults(name: str, config: Mapping) -> dict:
    """The config as an instance of class `name` built from it holds it (`from_config`): `config` as
    written (diffusers keeps even the keys its __init__ ignores), plus the default of every __init__
    argument it leaves out."""
    found = source.find_class(name)
    arguments = source.init_arguments(found) if found is not None else None
    if arguments is None:
        params = list(inspect.signature(_imported(name).__init__).parameters.values())[1:]
        arguments = {p.name: p.default for p in params if p.default is not p.empty}
    return {**{k: v for k, v in arguments.items() if v is not source.REQUIRED}, **config}


def has_alphas_cumprod(name: str, config: Mapping) -> bool:
    """Whether a schedule of class `name` has `alphas_cumprod` (the DDPM family flatcheck can noise with)."""
    found = source.find_class(name)
    verdict = source.sets_attribute_in_init(found, "alphas_cumprod") if found is not None else None
    if verdict is not None:
        return verdict
    return hasattr(_imported(name).from_config(dict(config)), "alphas_cumprod")


def call_default(pipeline_class: str | None, argument: str) -> Any:
    """The default of `argument` in the pipeline class's __call__ (None when it has none)."""
    if not pipeline_class:
        return None
    found = source.find_class(pipeline_class)
    answer = source.argument_default(found, "__call__", argument) if found is not None else None
    if answer is not None:
        return answer[1]
    from .conditioning import pipeline_default

    return pipeline_default(pipeline_class, argument)
