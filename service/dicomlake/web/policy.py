"""The action every route performs, declared here, next to nothing else: (method, route template) ->
:class:`~dicomlake.auth.roles.Action`.

Deny by default: with authentication on, a route missing from this table answers 403 for everyone, and
``tests/unit/test_auth_policy.py`` fails for every route of ``build_routes()`` that is not declared.
A new route needs one line here (``HEAD`` follows ``GET``).
"""

from __future__ import annotations

from dicomlake.auth.roles import Action

READ, WRITE, DELETE, ADMIN, PUBLIC = Action.READ, Action.WRITE, Action.DELETE, Action.ADMIN, Action.PUBLIC

STUDY = "/studies/{study}"
SERIES = STUDY + "/series/{series}"
INSTANCE = SERIES + "/instances/{instance}"

#: Routes that exist under ``/v2`` and under ``/v2/partitions/{partition}``, by the path after the prefix.
DICOMWEB: dict[tuple[str, str], Action] = {
    # STOW-RS
    ("POST", "/studies"): WRITE,
    ("PUT", "/studies"): WRITE,
    ("POST", STUDY): WRITE,
    ("PUT", STUDY): WRITE,
    # WADO-RS
    ("GET", STUDY): READ,
    ("GET", SERIES): READ,
    ("GET", INSTANCE): READ,
    ("GET", STUDY + "/metadata"): READ,
    ("GET", SERIES + "/metadata"): READ,
    ("GET", INSTANCE + "/metadata"): READ,
    ("GET", INSTANCE + "/bulkdata/{path:path}"): READ,
    ("GET", INSTANCE + "/frames/{frames}"): READ,
    ("GET", INSTANCE + "/rendered"): READ,
    ("GET", INSTANCE + "/frames/{frames}/rendered"): READ,
    ("GET", STUDY + "/thumbnail"): READ,
    ("GET", SERIES + "/thumbnail"): READ,
    ("GET", INSTANCE + "/thumbnail"): READ,
    ("GET", INSTANCE + "/frames/{frames}/thumbnail"): READ,
    # QIDO-RS
    ("GET", "/studies"): READ,
    ("GET", "/series"): READ,
    ("GET", "/instances"): READ,
    ("GET", STUDY + "/series"): READ,
    ("GET", STUDY + "/instances"): READ,
    ("GET", SERIES + "/instances"): READ,
    # delete
    ("DELETE", STUDY): DELETE,
    ("DELETE", SERIES): DELETE,
    ("DELETE", INSTANCE): DELETE,
    # change feed
    ("GET", "/changefeed"): READ,
    ("GET", "/changefeed/latest"): READ,
}

#: Routes that exist once, by their full template.
TOP_LEVEL: dict[tuple[str, str], Action] = {
    ("GET", "/health/live"): PUBLIC,
    ("GET", "/health/ready"): PUBLIC,
    ("GET", "/health/check"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,  # operational gauges (deletion queue), no patient data, scraped without a token
    ("GET", "/v2/partitions"): READ,
    ("POST", "/v2/extendedquerytags"): ADMIN,
    ("GET", "/v2/extendedquerytags"): ADMIN,
    ("GET", "/v2/extendedquerytags/{tag}"): ADMIN,
    ("PATCH", "/v2/extendedquerytags/{tag}"): ADMIN,
    ("DELETE", "/v2/extendedquerytags/{tag}"): ADMIN,
    ("GET", "/v2/extendedquerytags/{tag}/errors"): ADMIN,
    ("GET", "/v2/operations/{id}"): ADMIN,
    ("POST", "/v2/operations/rebuild-from-lake"): ADMIN,
}

PREFIXES = ("/v2", "/v2/partitions/{partition}")


def _build() -> dict[tuple[str, str], Action]:
    table = dict(TOP_LEVEL)
    for prefix in PREFIXES:
        for (method, path), action in DICOMWEB.items():
            table[(method, prefix + path)] = action
    return table


POLICY: dict[tuple[str, str], Action] = _build()


def action_for(method: str, template: str) -> Action | None:
    """The declared action, or None (undeclared: denied when authentication is on)."""
    return POLICY.get(("GET" if method == "HEAD" else method, template))
