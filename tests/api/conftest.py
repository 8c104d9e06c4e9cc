from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from dicomlake.app import create_app
from dicomlake.config import CompatibilityProfile, Settings
from tests.conftest import make_settings
from tests.helpers.asgi import running_app


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(create_app(settings)) as c:
        yield c


@pytest.fixture
async def azure_client(database_url: str, azurite: str, container: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(database_url, azurite, container, compatibility=CompatibilityProfile.AZURE)
    async with running_app(create_app(settings)) as c:
        yield c
