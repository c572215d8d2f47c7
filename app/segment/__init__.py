"""Segment messages: validation (``model``). Pure core: no Faust, Kafka or HTTP here."""

from app.segment.model import (
    BATCH_LIMIT,
    BATCH_MAX_MESSAGES,
    MESSAGE_LIMIT,
    MESSAGE_TYPES,
    InvalidMessage,
    ParsedMessage,
    content_message_id,
    parse_iso,
    parse_iso_utc,
    parse_message,
    split_batch,
)

__all__ = [
    "BATCH_LIMIT",
    "BATCH_MAX_MESSAGES",
    "MESSAGE_LIMIT",
    "MESSAGE_TYPES",
    "InvalidMessage",
    "ParsedMessage",
    "content_message_id",
    "parse_iso",
    "parse_iso_utc",
    "parse_message",
    "split_batch",
]
