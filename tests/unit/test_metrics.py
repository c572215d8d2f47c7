"""``GET /metrics``: counters and gauges in the Prometheus text exposition format."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from app.metrics import Metrics

# One sample line: name, optional {labels}, value (the text format's grammar, simplified).
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\\\|\\"|\\n)*"'
SAMPLE = re.compile(
    rf"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{{(?P<labels>{_LABEL}(?:,{_LABEL})*)\}})? "
    r"(?P<value>[-+]?(?:[0-9]+(?:\.[0-9]*)?(?:e[-+]?[0-9]+)?|Inf|NaN))$"
)


def samples(text: str) -> dict[str, float]:
    """``{"name{labels}": value}`` of every sample line; asserts each line is well formed."""
    out: dict[str, float] = {}
    assert text.endswith("\n")
    for line in text[:-1].split("\n"):  # the format's only line separator
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* \S", line), line
            continue
        m = SAMPLE.match(line)
        assert m, f"not a valid sample line: {line!r}"
        out[line.rsplit(" ", 1)[0]] = float(m.group("value"))
    return out


def unescape(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        if value[i] == "\\":
            out.append({"n": "\n", "\\": "\\", '"': '"'}[value[i + 1]])
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def test_empty_registry_renders_a_newline() -> None:
    assert Metrics().render() == "\n"


def test_counter_has_help_and_type_then_samples() -> None:
    m = Metrics()
    m.inc("emd_events_in_total", 3, account="acme")
    m.inc("emd_events_in_total", 2, account="acme")
    m.inc("emd_events_in_total", account="beta")
    lines = m.render().splitlines()
    assert lines == [
        "# HELP emd_events_in_total Segment messages accepted into the input topic",
        "# TYPE emd_events_in_total counter",
        'emd_events_in_total{account="acme"} 5',
        'emd_events_in_total{account="beta"} 1',
    ]
    assert m.value("emd_events_in_total", account="acme") == 5
    assert m.value("emd_events_in_total", account="nope") == 0
    assert m.value("never_seen") == 0


def test_counter_without_labels_and_unknown_help() -> None:
    m = Metrics()
    m.inc("my_custom_total")
    assert m.render().splitlines() == [
        "# HELP my_custom_total my_custom_total",
        "# TYPE my_custom_total counter",
        "my_custom_total 1",
    ]


def test_labels_are_sorted_and_order_of_kwargs_does_not_matter() -> None:
    m = Metrics()
    m.inc("emd_emarsys_calls_total", op="upsert", outcome="ok")
    m.inc("emd_emarsys_calls_total", outcome="ok", op="upsert")
    text = m.render()
    assert 'emd_emarsys_calls_total{op="upsert",outcome="ok"} 2' in text.splitlines()
    assert m.value("emd_emarsys_calls_total", outcome="ok", op="upsert") == 2


def test_each_metric_has_one_help_and_type_block() -> None:
    m = Metrics()
    for reason in ("invalid", "json", "identity"):
        m.inc("emd_events_rejected_total", account="a", reason=reason)
    m.inc("emd_events_in_total", account="a")
    text = m.render()
    assert text.count("# TYPE emd_events_rejected_total counter") == 1
    assert text.count("# HELP emd_events_rejected_total ") == 1
    # Metrics come in name order, each block's HELP/TYPE before its samples.
    names = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert names == ["emd_events_in_total", "emd_events_rejected_total"]
    assert len(samples(text)) == 4


def test_label_values_are_escaped() -> None:
    m = Metrics()
    nasty = 'say "hi"\\ then\nnewline'
    m.inc("emd_rule_transitions_total", rule=nasty, kind="started")
    text = m.render()
    (line,) = [x for x in text.splitlines() if x.startswith("emd_rule_transitions_total{")]
    assert line == (
        'emd_rule_transitions_total{kind="started",rule="say \\"hi\\"\\\\ then\\nnewline"} 1'
    )
    assert len(text.splitlines()) == 3  # the newline did not break the line
    samples(text)


@given(st.text(max_size=30))
def test_any_label_value_round_trips(value: str) -> None:
    m = Metrics()
    m.inc("emd_rule_transitions_total", rule=value)
    text = m.render()
    ((key, number),) = samples(text).items()
    assert number == 1
    raw = key[len('emd_rule_transitions_total{rule="') : -2]
    assert unescape(raw) == value


def test_large_and_fractional_counters_keep_every_digit() -> None:
    m = Metrics()
    m.inc("emd_events_in_total", 1_234_567, account="a")
    m.inc("emd_events_in_total", 0.25, account="b")
    m.inc("emd_events_in_total", 10**15 + 1, account="c")
    got = samples(m.render())
    assert got['emd_events_in_total{account="a"}'] == 1_234_567
    assert got['emd_events_in_total{account="b"}'] == 0.25
    assert got['emd_events_in_total{account="c"}'] == 10**15 + 1
    assert 'emd_events_in_total{account="a"} 1234567' in m.render().splitlines()


def test_gauges_render_with_type_gauge() -> None:
    m = Metrics()
    backlog = {"effects": 7.0}
    m.gauge("emd_sink_backlog", lambda: {(): backlog["effects"]})
    m.gauge(
        "emd_consumer_lag",
        lambda: {
            (("partition", "1"), ("topic", "segment-events")): 5.0,
            (("partition", "0"), ("topic", "segment-events")): 12.0,
        },
    )
    lines = m.render().splitlines()
    assert lines == [
        "# HELP emd_consumer_lag messages between the committed offset and the end of each "
        "partition",
        "# TYPE emd_consumer_lag gauge",
        'emd_consumer_lag{partition="0",topic="segment-events"} 12',
        'emd_consumer_lag{partition="1",topic="segment-events"} 5',
        "# HELP emd_sink_backlog effects waiting in the Emarsys sink",
        "# TYPE emd_sink_backlog gauge",
        "emd_sink_backlog 7",
    ]
    backlog["effects"] = 3.0  # a gauge is read at every scrape
    assert "emd_sink_backlog 3" in m.render().splitlines()


def test_counters_come_before_gauges() -> None:
    m = Metrics()
    m.gauge("emd_sink_backlog", lambda: {(): 1.0})
    m.inc("emd_events_in_total")
    types = [line for line in m.render().splitlines() if line.startswith("# TYPE")]
    assert types == ["# TYPE emd_events_in_total counter", "# TYPE emd_sink_backlog gauge"]


def test_a_failing_gauge_does_not_break_the_endpoint() -> None:
    m = Metrics()

    def broken() -> dict[tuple[tuple[str, str], ...], float]:
        raise RuntimeError("not ready")

    m.gauge("emd_consumer_lag", broken)
    m.gauge("emd_sink_backlog", lambda: {(): 2.0})
    m.inc("emd_events_in_total")
    text = m.render()
    assert "emd_consumer_lag" not in text
    assert "emd_sink_backlog 2" in text.splitlines()
    assert "emd_events_in_total 1" in text.splitlines()


def test_gauge_special_values() -> None:
    m = Metrics()
    m.gauge("g", lambda: {(("k", "nan"),): float("nan"), (("k", "inf"),): float("inf")})
    lines = m.render().splitlines()
    assert 'g{k="inf"} +Inf' in lines
    assert 'g{k="nan"} NaN' in lines


def test_render_ends_with_a_newline() -> None:
    m = Metrics()
    m.inc("emd_events_in_total")
    assert m.render().endswith("\n")
    assert not m.render().endswith("\n\n")
