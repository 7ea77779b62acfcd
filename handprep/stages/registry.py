"""The stage registry: every pipeline step is a plain function registered by name.

A stage's keyword parameters are its pipelines.yaml parameters, one to one. Their type
annotations (``float``, ``int``, ``bool``, ``str``, ``Literal[...]``, optionally wrapped in
``Annotated[..., Range(lo, hi)]``) are what the config validator checks, before any image
is read.

Kinds say what a function takes and gives, so the runner can chain them:

=============  ====================================  =============================
kind           signature                             gives
=============  ====================================  =============================
``filter``     ``f(image, **p) -> Verdict``          keep/drop + measured numbers
``image``      ``f(image, **p) -> image``            a new image
``masked``     ``f(image, mask, **p) -> image``      a new image (needs a mask)
``mask``       ``f(mask, **p) -> mask``              a new mask (needs a mask)
``segmenter``  ``f(image, **p) -> mask``             a mask from the image
``geometry``   ``f(image, mask, **p) -> Geometry``   image and mask moved together
=============  ====================================  =============================
"""
from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import numpy as np

KINDS = ("filter", "image", "masked", "mask", "segmenter", "geometry")


class StageError(ValueError):
    """A stage cannot process this image (the message says why and what to do)."""


class ParamError(ValueError):
    """A stage parameter is unknown or has a bad value; ``param`` names it."""

    def __init__(self, param: str, message: str):
        super().__init__(message)
        self.param = param


class Verdict(NamedTuple):
    """What a filter stage decided about an image."""

    keep: bool
    reason: str
    metrics: dict


class Geometry(NamedTuple):
    """Image and mask after a geometric step, with the numbers that map coordinates back."""

    image: np.ndarray
    mask: np.ndarray | None
    info: dict


class GeometryExtras(NamedTuple):
    """A geometry result plus extra images (name -> array) that the runner saves beside the
    output as ``rois/<id>_<name>.png`` and lists in the manifest (e.g. bone-age ROI crops)."""

    image: np.ndarray
    mask: np.ndarray | None
    info: dict
    extras: dict


@dataclass(frozen=True)
class Range:
    """Inclusive numeric bounds for a stage parameter (None: unbounded); ``odd`` for kernels
    that must have a centre pixel."""

    lo: float | None = None
    hi: float | None = None
    odd: bool = False

    def check(self, value: float) -> str | None:
        if self.lo is not None and value < self.lo:
            return f"must be ≥ {self.lo}"
        if self.hi is not None and value > self.hi:
            return f"must be ≤ {self.hi}"
        if self.odd and value % 2 == 0:
            return f"must be odd so the kernel is centred on each pixel (e.g. {int(value) + 1})"
        return None


@dataclass(frozen=True)
class Param:
    name: str
    base: Any  # float, int, bool, str, or a tuple of allowed literal values
    default: Any
    range: Range | None = None
    optional: bool = False  # None is allowed

    def describe(self) -> str:
        if isinstance(self.base, tuple):
            kind = " | ".join(repr(v) for v in self.base)
        else:
            kind = self.base.__name__
        if self.optional:
            kind += " | null"
        bounds = ""
        if self.range is not None:
            bounds = f" in [{self.range.lo if self.range.lo is not None else '-∞'}, " \
                     f"{self.range.hi if self.range.hi is not None else '∞'}]"
        if self.range is not None and self.range.odd:
            bounds += ", odd"
        return f"{self.name}: {kind}{bounds} = {self.default!r}"


@dataclass(frozen=True)
class Stage:
    name: str
    func: Callable
    kind: str
    version: int
    params: dict[str, Param]
    expensive: bool = False  # its product is cached (e.g. a U-Net mask)
    describe: Callable | None = None  # f(image, mask, **params) -> dict of numbers for the manifest
    doc: str = ""
    needs_mask: bool = False
    prepare: Callable | None = None  # f(params, base_dir) -> params: resolve paths, check files (config time)
    identity: Callable | None = None  # f(params) -> dict added to cache keys (e.g. a model file's hash)
    warmup: Callable | None = None  # f(params): load heavy state (a model) once per worker, before any image

    @property
    def gives_mask(self) -> bool:
        return self.kind == "segmenter"

    def check_params(self, params: dict) -> dict:
        """Validate user parameters; return the full set with defaults filled in.

        Raises :class:`ParamError` (unknown name or bad value) with a message that lists the
        valid choices.
        """
        resolved = {}
        for key in params:
            if key not in self.params:
                valid = ", ".join(self.params) or "(none)"
                raise ParamError(key, f"stage '{self.name}' has no parameter '{key}'; valid parameters: {valid}")
        for name, spec in self.params.items():
            value = params.get(name, spec.default)
            resolved[name] = _coerce(spec, value, self.name)
        return resolved


REGISTRY: dict[str, Stage] = {}


def _coerce(spec: Param, value: Any, stage_name: str) -> Any:
    where = f"{stage_name}.{spec.name}"
    if value is None:
        if spec.optional:
            return None
        raise ParamError(spec.name, f"{where} must be set (expected {spec.describe()})")
    if isinstance(spec.base, tuple):
        if value not in spec.base:
            raise ParamError(spec.name, f"{where} is {value!r}; valid choices: {', '.join(repr(v) for v in spec.base)}")
        return value
    if spec.base is bool:
        if not isinstance(value, bool):
            raise ParamError(spec.name, f"{where} must be true or false, got {value!r}")
        return value
    if spec.base in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamError(spec.name, f"{where} must be a number, got {value!r}")
        if spec.base is int and float(value) != int(value):
            raise ParamError(spec.name, f"{where} must be a whole number, got {value!r}")
        value = spec.base(value)
        if spec.range is not None:
            problem = spec.range.check(value)
            if problem:
                raise ParamError(spec.name, f"{where} {problem}, got {value!r}")
        return value
    if spec.base is str:
        if not isinstance(value, str):
            raise ParamError(spec.name, f"{where} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported parameter type for {where}")


def _param_from_annotation(name: str, annotation: Any, default: Any) -> Param:
    rng = None
    optional = False
    if typing.get_origin(annotation) is typing.Annotated:
        annotation, *extras = typing.get_args(annotation)
        rng = next((e for e in extras if isinstance(e, Range)), None)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        if len(args) != 1:
            raise TypeError(f"parameter {name}: only 'X | None' unions are supported")
        inner = _param_from_annotation(name, args[0], default)
        return dataclasses.replace(inner, optional=optional, range=inner.range or rng)
    if origin is typing.Literal:
        return Param(name, tuple(typing.get_args(annotation)), default, rng, optional)
    if annotation in (int, float, bool, str):
        return Param(name, annotation, default, rng, optional)
    raise TypeError(f"parameter {name}: unsupported annotation {annotation!r}")


def stage(name: str, kind: str, version: int = 1, expensive: bool = False,
          describe: Callable | None = None, needs_mask: bool | None = None,
          prepare: Callable | None = None, identity: Callable | None = None,
          warmup: Callable | None = None) -> Callable:
    """Register a function as a pipeline stage.

    ``version`` is part of every cache key: bump it when the function's output changes for
    the same input and parameters. ``prepare(params, base_dir)`` runs at config validation
    (resolve a relative path, check a file exists) and raises ParamError on problems;
    ``identity(params)`` adds what the parameters point to (a model file's hash) to cache keys;
    ``warmup(params)`` loads heavy state once per worker process before its first image.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown stage kind {kind!r}")

    def register(func: Callable) -> Callable:
        hints = typing.get_type_hints(func, include_extras=True)
        signature = inspect.signature(func)
        positional = {"filter": 1, "image": 1, "segmenter": 1, "mask": 1, "masked": 2, "geometry": 2}[kind]
        params = {}
        for i, (pname, p) in enumerate(signature.parameters.items()):
            if i < positional:
                continue
            if p.default is inspect.Parameter.empty:
                raise TypeError(f"stage {name}: parameter {pname} needs a default")
            params[pname] = _param_from_annotation(pname, hints[pname], p.default)
        if name in REGISTRY and REGISTRY[name].func is not func:
            raise ValueError(f"stage name {name!r} registered twice")
        doc = (inspect.getdoc(func) or "").split("\n\n")[0].replace("\n", " ")
        mask_needed = kind in ("masked", "mask") if needs_mask is None else needs_mask
        REGISTRY[name] = Stage(name, func, kind, version, params, expensive, describe, doc, mask_needed, prepare,
                               identity, warmup)
        return func

    return register


# Capability packages that contribute stages. They import this module, so it imports them
# by name and lazily, on the first look-up: stages/ never imports from the packages above it.
PLUGIN_MODULES = ("handprep.stages.contrast", "handprep.stages.enhance", "handprep.stages.geometry",
                  "handprep.stages.mask", "handprep.segment.stage", "handprep.landmarks.stages")


def load_stages() -> dict[str, Stage]:
    """Every registered stage by name (imports the modules that define them once)."""
    import importlib

    for module in PLUGIN_MODULES:
        importlib.import_module(module)
    return REGISTRY


def get_stage(name: str) -> Stage:
    """Look a stage up by name, listing the valid names if it is unknown."""
    load_stages()
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown stage '{name}'; valid stages: {', '.join(sorted(REGISTRY))}") from None
