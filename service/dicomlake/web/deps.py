"""The only place that touches ``request.state``."""

from __future__ import annotations

from typing import cast

from starlette.requests import Request

from dicomlake.deps import Deps


def deps(request: Request) -> Deps:
    return cast(Deps, request.state.deps)
