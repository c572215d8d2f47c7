"""One problem found in a config: where (``accounts.demo.rules[0].conditions[1].match``)
and why. The loader (YAML, schema) and the checks (semantics) both report these."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message
