"""Fixtures shared by every test package: temp volumes and stub channels."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from service_kit import configure_logging, insecure_channel


@pytest.fixture(autouse=True, scope="session")
def _logging() -> None:
    configure_logging("tests", level="WARNING", json=True)


@pytest.fixture
def volumes(tmp_path: Path) -> tuple[Path, Path]:
    """(user-models dir, models dir), empty, in a temp folder."""
    user_models = tmp_path / "user-models"
    models = tmp_path / "models"
    user_models.mkdir()
    models.mkdir()
    return user_models, models


@pytest_asyncio.fixture
async def channel_factory() -> AsyncIterator:
    """Opens channels to addresses and closes them at the end of the test."""
    channels = []

    def open_channel(address: str):
        channel = insecure_channel(address)
        channels.append(channel)
        return channel

    yield open_channel
    for channel in channels:
        await channel.close()
