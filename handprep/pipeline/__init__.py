"""Config, cache, batch runner and dataset export for the preprocessing chain."""
from handprep.pipeline.config import ConfigError, PipelineConfig, load_config, parse_config
from handprep.pipeline.runner import RunSummary, run_pipeline

__all__ = ["ConfigError", "PipelineConfig", "RunSummary", "load_config", "parse_config", "run_pipeline"]
