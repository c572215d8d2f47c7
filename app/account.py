"""An account's config compiled once: data maps, rules, key lookups.

Built when the config is loaded or edited, never per event.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from app.config.model import AccountConfig, Config
from app.datamaps import DataMaps
from app.jsonpath import compile_path, getter
from app.projection import Projection
from app.rules.machine import RuleSet


@dataclass
class Account:
    name: str
    config: AccountConfig
    #: the file's ``allowed_lateness``, used when the account sets none
    default_lateness: float = 0.0
    data_maps: DataMaps = field(init=False)
    rules: RuleSet = field(init=False)
    primary_key_path: tuple[str | int, ...] = field(init=False)
    #: reads the primary key value from an event (``read`` of ``primary_key_path``)
    primary_key_of: Callable[[Any], Any] = field(init=False, repr=False)
    #: what a person's lateness window keeps of each event (``app.timeline``)
    projection: Projection = field(init=False)

    def __post_init__(self) -> None:
        self.data_maps = DataMaps(self.config.data_maps)
        self.rules = RuleSet(self.config.rules, self.config.data_maps, salt=self.name)
        self.primary_key_path = compile_path(self.config.primary_key)
        self.primary_key_of = getter(self.primary_key_path)
        self.projection = Projection(
            [
                self.primary_key_path,
                *(compile_path(dm.path) for dm in self.config.data_maps),
                *self.rules.event_paths(),
            ],
            reads=self.data_maps.reads,
        )

    @property
    def allowed_lateness(self) -> float:
        """Seconds of wall-clock quiet after a person's latest event before their rule
        deadlines fire (0: no lateness window)."""
        own = self.config.allowed_lateness
        return self.default_lateness if own is None else own

    @property
    def key_field(self) -> int:
        return self.config.emarsys.key_field


class Accounts:
    """Every account of a config, with API-key lookup in constant time per key."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.by_name = {
            name: Account(name, cfg, default_lateness=config.allowed_lateness)
            for name, cfg in config.accounts.items()
        }
        self._keys = [
            (key.encode(), name) for name, cfg in config.accounts.items() for key in cfg.api_keys
        ]

    def __getitem__(self, name: str) -> Account:
        return self.by_name[name]

    def get(self, name: str) -> Account | None:
        return self.by_name.get(name)

    def __iter__(self):
        return iter(self.by_name.values())

    def account_for_key(self, api_key: str) -> str | None:
        """The account whose API key this is. Every configured key is compared, each with
        ``hmac.compare_digest``, so the time taken does not reveal which key nearly matched."""
        candidate = api_key.encode()
        found: str | None = None
        for key, name in self._keys:
            if hmac.compare_digest(key, candidate):
                found = name
        return found

    def names(self) -> Iterable[str]:
        return self.by_name.keys()
