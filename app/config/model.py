"""Pydantic models of the YAML config (the contract's format).

Field-level rules live here (types, required fields, durations, JSON paths); rules that
relate fields to each other (a rule's sequences, data maps a filter names) live in
``app.config.checks`` so that every error can carry its own location.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)

from app.durations import format_duration, parse_duration
from app.jsonpath import compile_path

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ACCOUNT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")

Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]

EventType = Literal["identify", "track", "page", "screen", "group", "alias", "delete"]
ConditionOn = Literal["track", "page", "screen", "identify", "group", "alias", "any"]
DataMapType = Literal["string", "numeric", "boolean", "date", "datetime", "choice"]


class _Strict(BaseModel):
    """Unknown keys are errors: a typo in a config key must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _check_path(value: str) -> str:
    compile_path(value)
    return value.strip()


JsonPath = Annotated[str, BeforeValidator(lambda v: _check_path(v) if isinstance(v, str) else v)]


class DataMapConfig(_Strict):
    """A named value read from every event, optionally written to an Emarsys field."""

    name: str
    path: JsonPath
    type: DataMapType = "string"
    field: int | None = Field(default=None, ge=1)
    choices: dict[str, int] | None = None
    max_length: int | None = Field(default=None, ge=1)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(
                f"{v!r} is not a valid data map name (letters, digits and _, not starting "
                "with a digit)"
            )
        return v

    @field_validator("choices", mode="before")
    @classmethod
    def _choice_keys(cls, v: Any) -> Any:
        # YAML turns `{true: 1, false: 2}` into bool keys; values are matched as text.
        if isinstance(v, dict):
            return {_choice_key(k): c for k, c in v.items()}
        return v

    @model_validator(mode="after")
    def _choices_for_choice(self) -> DataMapConfig:
        if self.type == "choice" and not self.choices:
            raise ValueError("a data map of type choice needs a choices table")
        if self.type != "choice" and self.choices:
            raise ValueError(f"choices are only for type choice, not {self.type}")
        return self


def _choice_key(k: Any) -> str:
    if isinstance(k, bool):
        return "true" if k else "false"
    if k is None:
        return "null"
    return str(k)


def _id_or_name(what: str) -> Any:
    """A validator: an Emarsys id (a whole number) or name; YAML's ``true`` or ``1.5`` is
    neither."""

    def check(value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ValueError(f"{value!r} is not {what} id (a whole number) or name (text)")

    return check


_trigger = _id_or_name("an external event")
Trigger = Annotated[int | str | None, BeforeValidator(_trigger)]
_contact_list = _id_or_name("a contact list")
ContactList = Annotated[int | str | None, BeforeValidator(_contact_list)]

#: The exit's actions besides ``trigger``. Left out of a rule's fingerprint while unset,
#: so rules written before they existed keep their fingerprint (app.rules.machine).
LIST_ACTIONS = ("add_to_list", "remove_from_list")


class ConditionConfig(_Strict):
    """One row of the rule editor's conditions table. An exit's actions are ``trigger``,
    ``add_to_list`` and ``remove_from_list``: at least one."""

    sequence: int = Field(ge=0)
    type: Literal["start", "step", "exclude", "exit"]
    on: ConditionOn = "any"
    wait: Duration | None = None
    within: Duration | None = None
    match: str | None = None
    trigger: Trigger = None
    #: an exit's contact-list actions (a list id or name), with or without ``trigger``
    add_to_list: ContactList = None
    remove_from_list: ContactList = None
    variables: list[str] = Field(default_factory=list)


class RuleConfig(_Strict):
    """A rule: a per-person sequence of conditions ending in Emarsys actions (an external
    event, contact-list changes)."""

    name: str = Field(min_length=1, max_length=200)
    lifetime: Duration = 86400.0
    multiple_active: bool = False
    transaction: str | None = None
    enabled: bool = True
    conditions: list[ConditionConfig] = Field(min_length=1)


class EmarsysConfig(_Strict):
    """How to reach one Emarsys account (or the simulator)."""

    api_url: str
    auth: Literal["oauth2", "wsse"] = "oauth2"
    token_url: str = "https://auth.emarsys.net/oauth2/token"
    client_id: str | None = None
    client_secret: str | None = Field(default=None, repr=False)
    username: str | None = None
    secret: str | None = Field(default=None, repr=False)
    key_field: int = Field(default=3, ge=1)
    contact_list_id: int | None = None
    requests_per_minute: int = Field(default=1000, ge=1)
    timeout: Duration = 30.0
    retry_for: Duration = 3600.0
    max_backoff: Duration = 60.0

    @field_validator("api_url", "token_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _credentials(self) -> EmarsysConfig:
        if self.auth == "oauth2" and not (self.client_id and self.client_secret):
            raise ValueError("auth oauth2 needs client_id and client_secret")
        if self.auth == "wsse" and not (self.username and self.secret):
            raise ValueError("auth wsse needs username and secret")
        return self


class AccountConfig(_Strict):
    """One Segment workspace sending to one Emarsys account."""

    api_keys: list[str] = Field(min_length=1)
    primary_key: JsonPath
    shared_secret: str | None = Field(default=None, repr=False)
    emarsys: EmarsysConfig
    data_maps: list[DataMapConfig] = Field(default_factory=list)
    rules: list[RuleConfig] = Field(default_factory=list)
    #: this account's lateness window; None takes the file's ``allowed_lateness``
    allowed_lateness: Duration | None = None

    @field_validator("api_keys")
    @classmethod
    def _keys(cls, v: list[str]) -> list[str]:
        for k in v:
            if not k or not k.strip():
                raise ValueError("an API key cannot be empty")
        return v

    def data_map(self, name: str) -> DataMapConfig | None:
        for dm in self.data_maps:
            if dm.name == name:
                return dm
        return None


class SinkConfig(_Strict):
    """Batching of Emarsys calls, and when an account's failing Emarsys gets parked."""

    batch_size: int = Field(default=1000, ge=1, le=1000)
    flush_interval: Duration = 1.0
    #: An account whose call has been in flight this long (retrying 5xx or 429, a slow
    #: Emarsys) has its effects parked in its parking topic (``agents.lanes``).
    park_after: Duration = Field(default=10.0, gt=0)
    #: Calls to one account's Emarsys a worker keeps in flight at once, each with other
    #: contacts than the rest (``agents.lanes``); the account's ``requests_per_minute``
    #: still spaces them. 1 sends one batch after the other.
    calls_in_flight: int = Field(default=2, ge=1, le=16)


class Config(_Strict):
    """The whole file."""

    app_id: str = "emarsys-destination"
    broker: str = "kafka://127.0.0.1:9092"
    input_topic: str = "segment-events"
    partitions: int = Field(default=8, ge=1, le=1024)
    replication_factor: int = Field(default=1, ge=1)
    default_account: str | None = None
    dedupe_window: Duration = 86400.0
    #: How long (wall clock) a person's rule deadlines wait after their latest event, so
    #: events delivered late or out of order are applied in event-time order first
    #: (``app.timeline``). 0 turns the window off: inputs apply in arrival order.
    allowed_lateness: Duration = 60.0
    sink: SinkConfig = Field(default_factory=SinkConfig)
    faust: dict[str, Any] = Field(default_factory=dict)
    accounts: dict[str, AccountConfig] = Field(min_length=1)

    @field_validator("broker")
    @classmethod
    def _broker(cls, v: str) -> str:
        if v != "embedded" and not re.match(r"^(kafka|aiokafka)://", v):
            raise ValueError(f"{v!r}: use kafka://HOST:PORT[;kafka://HOST2:PORT] or embedded")
        return v

    @field_validator("accounts")
    @classmethod
    def _account_ids(cls, v: dict[str, AccountConfig]) -> dict[str, AccountConfig]:
        for name in v:
            if not ACCOUNT_RE.match(str(name)):
                raise ValueError(f"{name!r} is not a valid account id")
        return v

    @model_validator(mode="after")
    def _default_account(self) -> Config:
        if self.default_account is not None and self.default_account not in self.accounts:
            raise ValueError(f"default_account {self.default_account!r} is not an account")
        return self

    def fallback_account(self) -> str | None:
        """The account of topic messages that name none: the default, or the only one."""
        if self.default_account:
            return self.default_account
        if len(self.accounts) == 1:
            return next(iter(self.accounts))
        return None
