"""A server process settles its heap once started: what start-up built is frozen out of the cycle collector's
sight (router/app.py `settle_heap`), so per-request garbage does not make it rescan the whole process, and the
youngest generation is collected less often."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from router.app import YOUNG_COLLECTION_AFTER, create_app
from router.replay.runner import BackgroundServer
from tests.support import proxy_settings


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """The test process's heap is not frozen before the test, and is thawed after it."""
    gc.unfreeze()
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("unfrozen")
def test_a_server_process_freezes_what_start_up_built() -> None:
    with BackgroundServer(create_app(proxy_settings("http://127.0.0.1:9"), server_process=True)):
        frozen = gc.get_freeze_count()
        assert frozen > 10_000, f"only {frozen} objects frozen"
        assert gc.get_threshold()[0] == YOUNG_COLLECTION_AFTER


@pytest.mark.usefixtures("unfrozen")
def test_an_app_embedded_in_another_process_leaves_its_heap_alone() -> None:
    with BackgroundServer(create_app(proxy_settings("http://127.0.0.1:9"))):
        assert gc.get_freeze_count() == 0
        assert gc.get_threshold()[0] != YOUNG_COLLECTION_AFTER
