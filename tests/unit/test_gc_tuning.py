"""The worker's collector settings (``app.gc_tuning``), applied once it has started."""

from __future__ import annotations

import gc

import pytest

from app import gc_tuning


@pytest.fixture
def restore_gc():
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_tune_freezes_start_up_objects_and_raises_the_thresholds(restore_gc, monkeypatch):
    monkeypatch.delenv(gc_tuning.ENV, raising=False)
    gc.unfreeze()
    assert gc_tuning.tune() is True
    assert gc.get_threshold() == gc_tuning.THRESHOLDS
    assert gc.get_freeze_count() > 0  # what existed is no longer scanned


def test_the_defaults_stay_when_asked(restore_gc, monkeypatch):
    monkeypatch.setenv(gc_tuning.ENV, "1")
    before = gc.get_threshold()
    assert gc_tuning.tune() is False
    assert gc.get_threshold() == before
