from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.stack import Stack, running_stack, stack_backends


@pytest.fixture(scope="session", params=stack_backends())
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One deployment per backend for the whole session: each test seeds its own billing."""
    directory: Path = tmp_path_factory.mktemp(f"stack-{request.param}")
    with running_stack(request.param, directory) as running:
        yield running


@pytest.fixture(autouse=True)
def _clean_faults(stack: Stack) -> Iterator[None]:
    yield
    stack.state.faults.replace(type(stack.state.faults.settings)())
