"""Config edits an admin API client can send that used to hang or crash a worker."""

from __future__ import annotations

import pytest

from app.config import ConfigError, load_config_text
from app.config.live import apply_edit
from app.rules.fql import FilterError, compile_filter

CONFIG = load_config_text(
    """
accounts:
  acme:
    api_keys: [k]
    primary_key: context.traits.email
    emarsys: {api_url: "http://127.0.0.1:1/api/v3", client_id: c, client_secret: s}
""",
    env={},
)


@pytest.mark.parametrize("sequence", [3, 10**7, 10**30])
def test_a_huge_sequence_is_a_located_problem_at_once(sequence: int) -> None:
    """The gap message used to list range(sequence): 10**30 ran the worker out of memory."""
    rule = {
        "name": "r",
        "conditions": [
            {"sequence": 0, "type": "start"},
            {"sequence": sequence, "type": "exit", "trigger": 1},
        ],
    }
    with pytest.raises(ConfigError) as err:
        apply_edit(CONFIG, "acme", {"rules": [rule]})
    (gap,) = [p for p in err.value.problems if "without gaps" in p.message]
    assert gap.location == "rules[0].conditions"
    assert gap.message.endswith("missing [1, 2]") or "..." in gap.message
    assert len(gap.message) < 200


@pytest.mark.parametrize("text", ["\u00b2", "x = \u00b2", "\u0661 = 1", "-\u00b2"])
def test_unicode_digits_are_an_fql_error_not_a_crash(text: str) -> None:
    with pytest.raises(FilterError) as err:
        compile_filter(text, set())
    assert "column" in str(err.value)
