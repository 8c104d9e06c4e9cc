"""Deny by default: every route the service serves has a declared action in web/policy.py."""

from __future__ import annotations

from starlette.routing import Route

from dicomlake.auth.roles import Action
from dicomlake.web.policy import POLICY, action_for
from dicomlake.web.routes import build_routes


def route_methods() -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for route in build_routes():
        assert isinstance(route, Route), f"{route!r} is not a plain Route: declare how web/policy.py covers it"
        assert route.methods, f"{route.path} has no methods"
        pairs.extend((method, route.path) for method in sorted(route.methods))
    return pairs


def test_every_route_and_method_has_a_declared_action() -> None:
    missing = [f"{method} {path}" for method, path in route_methods() if action_for(method, path) is None]
    assert not missing, "routes without a declared action (add them to service/dicomlake/web/policy.py): " + ", ".join(
        missing
    )


def test_no_declared_action_for_a_route_that_does_not_exist() -> None:
    served = {("GET" if m == "HEAD" else m, p) for m, p in route_methods()}
    stale = sorted(f"{m} {p}" for m, p in POLICY if (m, p) not in served)
    assert not stale, "web/policy.py declares routes that build_routes() does not serve: " + ", ".join(stale)


def test_only_health_and_metrics_are_public() -> None:
    public = sorted(p for (_, p), a in POLICY.items() if a is Action.PUBLIC)
    assert public == ["/health/check", "/health/live", "/health/ready", "/metrics"]


def test_actions_by_kind() -> None:
    assert action_for("GET", "/v2/studies/{study}") is Action.READ
    assert action_for("HEAD", "/v2/studies/{study}") is Action.READ
    assert action_for("POST", "/v2/partitions/{partition}/studies") is Action.WRITE
    assert action_for("DELETE", "/v2/studies/{study}/series/{series}") is Action.DELETE
    assert action_for("PATCH", "/v2/studies/{study}") is None
    assert action_for("GET", "/v2/not-a-route") is None
