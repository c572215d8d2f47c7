"""The running process's view of the world: settings, the live config, metrics.

One instance per worker process (``RUNTIME``); the config inside can be replaced at run
time (console edits), so code reads ``runtime.accounts`` each time rather than caching it.
"""

from __future__ import annotations

from app.account import Accounts
from app.config.model import Config
from app.metrics import Metrics
from app.settings import Settings


class Runtime:
    def __init__(self, config: Config, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.config = config
        self.accounts = Accounts(config)

    def replace_config(self, config: Config) -> None:
        # Build first, swap after: readers never see a half-built account.
        accounts = Accounts(config)
        self.config, self.accounts = config, accounts

    @property
    def broker_url(self) -> str:
        return self.settings.broker_override or self.config.broker

    def topic_name(self, suffix: str) -> str:
        return f"{self.config.app_id}-{suffix}"
