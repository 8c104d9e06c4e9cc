"""Data actions and the mapping from app roles (the token's ``roles`` claim) to them."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping


class Action(enum.StrEnum):
    """What a route does to data. ``public`` routes (health) need no token at all."""

    PUBLIC = "public"
    READ = "read"  # WADO-RS, QIDO-RS, change feed, partition list
    WRITE = "write"  # STOW-RS (store and upsert)
    DELETE = "delete"
    ADMIN = "admin"  # extended query tags, operations, partition management


DATA_ACTIONS = frozenset({Action.READ, Action.WRITE, Action.DELETE, Action.ADMIN})

#: Built-in roles, named like the Azure DICOM service's. Compared after :func:`normalise_role`, so the
#: app role value ``DICOM.Data.Reader`` (Entra app role values cannot contain spaces) matches too.
BUILTIN_ROLES: dict[str, frozenset[Action]] = {
    "DICOM Data Reader": frozenset({Action.READ}),
    "DICOM Data Owner": frozenset(DATA_ACTIONS),
}

_SEPARATORS = re.compile(r"[\s._-]+")


def normalise_role(name: str) -> str:
    """``DICOM Data Reader``, ``DICOM.Data.Reader`` and ``dicom_data_reader`` are the same role."""
    return _SEPARATORS.sub("", name).lower()


class RoleMap:
    """Role name -> allowed actions: the built-in roles plus the configured ones (which win)."""

    def __init__(self, configured: Mapping[str, Iterable[str]] | None = None) -> None:
        table = {normalise_role(name): actions for name, actions in BUILTIN_ROLES.items()}
        for name, actions in (configured or {}).items():
            table[normalise_role(name)] = frozenset(Action(a) for a in actions)
        self._table = table

    def actions(self, roles: Iterable[str]) -> frozenset[Action]:
        allowed: set[Action] = set()
        for role in roles:
            allowed |= self._table.get(normalise_role(role), frozenset())
        return frozenset(allowed)

    def allows(self, roles: Iterable[str], action: Action) -> bool:
        return action is Action.PUBLIC or action in self.actions(roles)


def parse_role_map(text: str) -> dict[str, tuple[str, ...]]:
    """``Radiologist=read;Uploader=read,write`` -> {role: actions}; raise ValueError with a readable message."""
    result: dict[str, tuple[str, ...]] = {}
    for entry in text.split(";"):
        if not entry.strip():
            continue
        name, sep, actions = entry.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"entry {entry.strip()!r} is not Role=action[,action]")
        parsed: list[str] = []
        for action in actions.split(","):
            value = action.strip().lower()
            if value not in {a.value for a in DATA_ACTIONS}:
                raise ValueError(
                    f"role {name.strip()!r}: unknown action {action.strip()!r} (read, write, delete, admin)"
                )
            parsed.append(value)
        result[name.strip()] = tuple(parsed)
    return result
