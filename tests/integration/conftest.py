from __future__ import annotations

import pytest

from app.broker import EmbeddedBroker, free_port
from tests.integration.stack import Simulator, Stack, account_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    b = EmbeddedBroker(port=free_port(), log_path=str(log)).start()
    yield b
    b.stop()


@pytest.fixture(scope="session")
def simulator(tmp_path_factory):
    sim = Simulator(tmp_path_factory.mktemp("sim"))
    yield sim
    sim.stop()


@pytest.fixture
def make_stack(broker, simulator, tmp_path):
    stacks: list[Stack] = []

    def make(accounts=None, **kw) -> Stack:
        accts = accounts if accounts is not None else {"acme": account_config(simulator)}
        stack = Stack(broker.url, tmp_path, accts, **kw)
        stacks.append(stack)
        return stack

    yield make
    for s in stacks:
        s.stop()
