"""Reading the YAML file: ``${ENV}`` substitution, pydantic validation, located errors.

Every problem is reported as ``location: reason`` (``accounts.demo.data_maps[2].type: ...``)
and all of them at once, so a user fixes the file in one pass.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from app.config.model import Config
from app.config.problem import Problem

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """An invalid config; ``problems`` lists every one with its location."""

    def __init__(self, problems: list[Problem], source: str = "config") -> None:
        self.problems = problems
        self.source = source
        super().__init__("\n".join(str(p) for p in problems))

    def report(self) -> str:
        lines = [f"{self.source}: {len(self.problems)} problem(s)"]
        lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)


class _Loader(yaml.SafeLoader):
    """YAML 1.2-style booleans: only true/false.

    PyYAML follows YAML 1.1, where ``on``, ``off``, ``yes`` and ``no`` are booleans, so the
    contract's ``on: track`` would become ``True: "track"``.
    """


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def format_location(loc: tuple[Any, ...] | list[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _substitute(node: Any, loc: tuple[Any, ...], env: Mapping[str, str], problems: list[Problem]):
    if isinstance(node, str):

        def repl(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            problems.append(
                Problem(format_location(loc), f"environment variable {name} is not set")
            )
            return ""

        return _ENV_REF.sub(repl, node)
    if isinstance(node, dict):
        return {k: _substitute(v, (*loc, k), env, problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, (*loc, i), env, problems) for i, v in enumerate(node)]
    return node


def parse_yaml(text: str, source: str = "config") -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([Problem(where, f"not valid YAML: {problem}")], source) from None


def validate_data(
    data: Any,
    source: str = "config",
    env: Mapping[str, str] | None = None,
    *,
    substitute: bool = True,
) -> Config:
    """A ``Config`` from parsed YAML/JSON data, or ``ConfigError`` with every problem.

    ``substitute=False`` for data that was substituted already (a live edit merged into
    the running config): a ``${...}`` in a rule name is then just text."""
    problems: list[Problem] = []
    if not isinstance(data, dict):
        raise ConfigError([Problem("", "the config must be a mapping at the top level")], source)
    if substitute:
        data = _substitute(data, (), os.environ if env is None else env, problems)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key (check the spelling)"
            problems.append(Problem(format_location(err["loc"]), msg))
        from app.config.checks import partial_problems

        problems += partial_problems(data)
        raise ConfigError(problems, source) from None
    from app.config.checks import semantic_problems

    problems += semantic_problems(config)
    if problems:
        raise ConfigError(problems, source)
    return config


def load_config_text(text: str, source: str = "config", env: Mapping[str, str] | None = None):
    return validate_data(parse_yaml(text, source), source, env)


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem("", f"cannot read {p}: {exc.strerror}")], str(p)) from None
    return load_config_text(text, str(p), env)
