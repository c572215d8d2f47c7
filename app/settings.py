"""Process settings from the environment (the config file holds everything else).

- ``EMD_CONFIG``: path of the YAML config (``--config`` sets it).
- ``EMD_PROFILE``: ``dev`` for fast consumer-group joins (set by ``emarsys-destination dev``).
- ``EMD_BROKER``: overrides the config's broker URL (``dev`` sets it to the embedded broker).
- ``EMD_ADMIN_TOKEN``: bearer token for the inspection and configuration API.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    config_path: str | None
    profile: str
    broker_override: str | None
    admin_token: str

    @classmethod
    def from_env(cls) -> Settings:
        token = os.environ.get("EMD_ADMIN_TOKEN") or ""
        if not token:
            # No token configured: generate one so the API is never open; `dev` prints it.
            token = secrets.token_urlsafe(24)
            os.environ["EMD_ADMIN_TOKEN"] = token
        return cls(
            config_path=os.environ.get("EMD_CONFIG"),
            profile=os.environ.get("EMD_PROFILE", "production"),
            broker_override=os.environ.get("EMD_BROKER") or None,
            admin_token=token,
        )

    @property
    def dev(self) -> bool:
        return self.profile == "dev"
