"""Pipeline stages: pure functions over arrays, registered by name (see ``registry``)."""
from handprep.stages import contrast, enhance, geometry, mask  # noqa: F401  (registers the stages)
from handprep.segment import stage as _segment_stage  # noqa: F401,E402  (torch loads on first use)
from handprep.landmarks import stages as _landmark_stages  # noqa: F401,E402  (mediapipe loads on first use)
from handprep.stages.registry import REGISTRY, Geometry, StageError, Verdict, get_stage, stage

__all__ = ["REGISTRY", "Geometry", "StageError", "Verdict", "get_stage", "stage"]
