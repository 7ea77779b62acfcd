"""Pipeline stages: pure functions over arrays, registered by name (see ``registry``).

Importing this package registers nothing by itself: ``registry.load_stages()`` imports the
stage modules (these and the capability packages' stage modules) on first use.
"""
from handprep.stages.registry import REGISTRY, Geometry, StageError, Verdict, get_stage, load_stages, stage

__all__ = ["REGISTRY", "Geometry", "StageError", "Verdict", "get_stage", "load_stages", "stage"]
