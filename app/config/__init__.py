"""The YAML configuration: models (``model``), loading and located errors (``loader``)."""

from app.config.loader import ConfigError, load_config, load_config_text
from app.config.model import AccountConfig, Config, DataMapConfig, EmarsysConfig, RuleConfig

__all__ = [
    "AccountConfig",
    "Config",
    "ConfigError",
    "DataMapConfig",
    "EmarsysConfig",
    "RuleConfig",
    "load_config",
    "load_config_text",
]
