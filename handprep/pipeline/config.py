"""pipelines.yaml: schema, validation (before any image is read) and the resolved config.

Relative paths in the YAML are relative to the YAML file's folder; paths given on the
command line are relative to the current directory.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from handprep.io import output_overlap as io_output_overlap
from handprep.stages.registry import ParamError, get_stage

BACKENDS = ("loky", "threading", "sequential", "dask")


class ConfigError(ValueError):
    """pipelines.yaml is invalid; the message names the file, line and key, and valid choices."""


@dataclass(frozen=True)
class StageStep:
    name: str
    params: dict
    line: int | None = None

    def key(self) -> dict:
        """What identifies this step's output in the cache (name, version, parameters, files it uses)."""
        stage = get_stage(self.name)
        key = {"stage": self.name, "version": stage.version, "params": self.params}
        if stage.identity is not None:
            key["uses"] = stage.identity(self.params)
        return key


@dataclass(frozen=True)
class InputConfig:
    images: str
    masks: str | None = None
    labels: str | None = None
    max_side_px: int = 4096
    min_side_px: int = 32
    max_pixels: int = 400_000_000


@dataclass(frozen=True)
class ExportConfig:
    pack: bool = True
    save_masks: bool = True
    png_compression: int = 1


@dataclass(frozen=True)
class PipelineConfig:
    input: InputConfig
    output: str
    stages: tuple[StageStep, ...]
    workers: int = 0
    seed: int = 0
    backend: str = "loky"
    scheduler: str | None = None
    export: ExportConfig = field(default_factory=ExportConfig)
    source: str | None = None

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["stages"] = [{s.name: s.params} for s in self.stages]
        return data

    @property
    def n_workers(self) -> int:
        return self.workers if self.workers > 0 else (os.cpu_count() or 1)


_TOP_KEYS = {"input", "output", "stages", "workers", "seed", "backend", "scheduler", "export"}
_INPUT_KEYS = {f.name for f in dataclasses.fields(InputConfig)}
_EXPORT_KEYS = {f.name for f in dataclasses.fields(ExportConfig)}


def _line_map(node: yaml.Node | None, path: tuple = (), out: dict | None = None) -> dict:
    """Map each key path (('stages', 2, 'clahe', 'clip_limit')) to its 1-based line."""
    out = {} if out is None else out
    if node is None:
        return out
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            out[path + (key,)] = key_node.start_mark.line + 1
            _line_map(value_node, path + (key,), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_map(item, path + (i,), out)
    return out


class _Context:
    def __init__(self, source: str, lines: dict):
        self.source, self.lines = source, lines

    def error(self, path: tuple, message: str) -> ConfigError:
        line = None
        for cut in range(len(path), -1, -1):
            line = self.lines.get(path[:cut])
            if line is not None:
                break
        where = f"{self.source} line {line}" if line else self.source
        return ConfigError(f"{where}: {message}")


def load_config(path: str | os.PathLike, **overrides: Any) -> PipelineConfig:
    """Read and validate a pipelines.yaml; keyword overrides (from the CLI) win over the file.

    Overrides: ``images``, ``masks``, ``labels``, ``output``, ``workers``, ``backend``,
    ``scheduler`` (None = keep the file's value).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the pipeline file ({exc.strerror}).") from exc
    return parse_config(text, str(path), path.parent, **overrides)


def parse_config(text: str, source: str = "<pipeline>", base_dir: str | os.PathLike = ".",
                 check_paths: bool = True, **overrides: Any) -> PipelineConfig:
    """Validate YAML text into a :class:`PipelineConfig` (see :func:`load_config`)."""
    data, ctx = _read_yaml(text, source)
    base = Path(base_dir)
    input_config = _parse_input(data, ctx, base, overrides)
    output = _resolve_path(data.get("output"), ("output",), ctx, base, overrides.get("output"))
    if output is None:
        raise ctx.error((), "output is missing: name the folder for the dataset, or pass --output")
    run_settings = _parse_run_settings(data, ctx, overrides)
    export = _parse_export(data, ctx)
    steps = _parse_stages(data.get("stages"), ctx, has_mask_input=input_config.masks is not None, base_dir=base)
    if check_paths:
        _check_paths(input_config, ctx)
    problem = output_overlap(input_config, output)
    if problem:
        raise ctx.error(("output",), problem)
    return PipelineConfig(input=input_config, output=output, stages=tuple(steps), export=export, source=source,
                          **run_settings)


def _read_yaml(text: str, source: str) -> tuple[dict, _Context]:
    """Parse safely, keep each key's line for messages, and check the top-level keys."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}{where}: not valid YAML ({problem}). Check indentation and colons.") from None
    ctx = _Context(source, _line_map(node))
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ctx.error((), "the pipeline file must be a mapping with keys input, output, stages")
    _refuse_unknown(data, _TOP_KEYS, (), "", ctx)
    return data, ctx


def _refuse_unknown(mapping: dict, valid: set, path: tuple, prefix: str, ctx: _Context) -> None:
    unknown = set(mapping) - valid
    if unknown:
        key = sorted(unknown, key=str)[0]
        raise ctx.error(path + (key,), f"unknown key '{prefix}{key}'; valid keys: {', '.join(sorted(valid))}")


def _resolve_path(value: Any, key_path: tuple, ctx: _Context, base: Path, cli_value: Any = None) -> str | None:
    """A command-line path (relative to the current folder) wins; YAML paths are relative to the file."""
    if cli_value is not None:
        return str(Path(cli_value))
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ctx.error(key_path, f"{'.'.join(map(str, key_path))} must be a path, got {value!r}")
    expanded = os.path.expanduser(value)
    return expanded if os.path.isabs(expanded) else str(base / expanded)


def _parse_input(data: dict, ctx: _Context, base: Path, overrides: dict) -> InputConfig:
    raw = data.get("input", {})
    if isinstance(raw, str):
        raw = {"images": raw}
    if not isinstance(raw, dict):
        raise ctx.error(("input",), "input must be a mapping (images, masks, labels, …) or a folder path")
    _refuse_unknown(raw, _INPUT_KEYS, ("input",), "input.", ctx)
    images = _resolve_path(raw.get("images"), ("input", "images"), ctx, base, overrides.get("images"))
    if images is None:
        raise ctx.error(("input",), "input.images is missing: name a folder or glob of radiographs, or pass --input")
    masks = _resolve_path(raw.get("masks"), ("input", "masks"), ctx, base, overrides.get("masks"))
    labels = _resolve_path(raw.get("labels"), ("input", "labels"), ctx, base, overrides.get("labels"))
    numbers = {}
    for key, lo in (("max_side_px", 64), ("min_side_px", 1), ("max_pixels", 1)):
        value = raw.get(key, getattr(InputConfig, key))
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise ctx.error(("input", key), f"input.{key} must be a whole number ≥ {lo}, got {value!r}")
        numbers[key] = value
    return InputConfig(images=images, masks=masks, labels=labels, **numbers)


def _parse_run_settings(data: dict, ctx: _Context, overrides: dict) -> dict:
    """workers, seed, backend and scheduler (command-line values win)."""
    workers = overrides.get("workers")
    workers = data.get("workers", 0) if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ctx.error(("workers",), f"workers must be a whole number ≥ 0 (0 = all cores), got {workers!r}")
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ctx.error(("seed",), f"seed must be a whole number, got {seed!r}")
    backend = overrides.get("backend") or data.get("backend", "loky")
    if backend not in BACKENDS:
        raise ctx.error(("backend",), f"backend {backend!r} is unknown; valid: {', '.join(BACKENDS)}")
    scheduler = overrides.get("scheduler") or data.get("scheduler")
    if scheduler is not None and not isinstance(scheduler, str):
        raise ctx.error(("scheduler",), "scheduler must be an address such as tcp://host:8786")
    return {"workers": workers, "seed": seed, "backend": backend, "scheduler": scheduler}


def _parse_export(data: dict, ctx: _Context) -> ExportConfig:
    raw = data.get("export", {}) or {}
    if not isinstance(raw, dict):
        raise ctx.error(("export",), "export must be a mapping (pack, save_masks, png_compression)")
    _refuse_unknown(raw, _EXPORT_KEYS, ("export",), "export.", ctx)
    for key in ("pack", "save_masks"):
        if key in raw and not isinstance(raw[key], bool):
            raise ctx.error(("export", key), f"export.{key} must be true or false")
    compression = raw.get("png_compression", 1)
    if isinstance(compression, bool) or not isinstance(compression, int) or not 0 <= compression <= 9:
        raise ctx.error(("export", "png_compression"), "export.png_compression must be 0..9")
    return ExportConfig(**raw)


def _parse_stages(raw: Any, ctx: _Context, has_mask_input: bool, base_dir: Path) -> list[StageStep]:
    if raw is None:
        raise ctx.error((), "stages is missing: list the steps, e.g. '- clahe: {clip_limit: 3.0}'")
    if not isinstance(raw, list):
        raise ctx.error(("stages",), "stages must be a list of steps ('- name: {param: value}')")
    steps = []
    have_mask = has_mask_input
    for i, entry in enumerate(raw):
        path = ("stages", i)
        if isinstance(entry, str):
            name, params = entry, {}
        elif isinstance(entry, dict) and len(entry) == 1:
            name, params = next(iter(entry.items()))
            params = {} if params is None else params
            path = path + (name,)
        else:
            raise ctx.error(path, "each step must be a stage name or '- name: {param: value}'")
        try:
            stage = get_stage(name)
        except KeyError as exc:
            raise ctx.error(path, exc.args[0]) from None
        if not isinstance(params, dict):
            raise ctx.error(path, f"parameters of '{name}' must be a mapping, got {params!r}")
        try:
            resolved = stage.check_params(params)
            if stage.prepare is not None:
                resolved = stage.prepare(resolved, base_dir)
        except ParamError as exc:
            raise ctx.error(path + (exc.param,), str(exc)) from None
        if stage.needs_mask and not have_mask:
            raise ctx.error(path, f"stage '{name}' needs a hand mask but none exists at this point: put a "
                                  "mask-making stage (segment, threshold_mask) before it or set input.masks")
        have_mask = have_mask or stage.gives_mask
        steps.append(StageStep(name, resolved, ctx.lines.get(path)))
    if not steps:
        raise ctx.error(("stages",), "stages is empty: list at least one step")
    return steps


def _check_paths(config: InputConfig, ctx: _Context) -> None:
    images = config.images
    if not any(ch in images for ch in "*?[") and not Path(images).is_dir():
        raise ctx.error(("input", "images"), f"input folder {images} does not exist (set input.images or pass --input)")
    if config.masks is not None and not Path(config.masks).is_dir():
        raise ctx.error(("input", "masks"), f"mask folder {config.masks} does not exist (set input.masks or pass --masks)")
    if config.labels is not None and not Path(config.labels).is_file():
        raise ctx.error(("input", "labels"), f"labels file {config.labels} does not exist (set input.labels or pass --labels)")


def output_overlap(config: InputConfig, output: str | os.PathLike) -> str | None:
    """Why ``output`` may not be used with these inputs (images, masks, labels), or None."""
    inputs = {"input folder": config.images, "mask folder": config.masks, "labels file": config.labels}
    return io_output_overlap(output, inputs, option="--output")
