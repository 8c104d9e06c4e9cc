"""Token validation and the key cache against a local JWKS: every forged class is refused."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import pytest

from dicomlake.auth import InvalidTokenError, JwksCache, KeysUnavailableError, TokenValidator
from dicomlake.auth.roles import Action, RoleMap, normalise_role, parse_role_map
from tests.helpers.entra import AUDIENCE, ISSUER, TENANT, FakeEntra, fake_entra, forged_tokens, new_key

EXPECTED_REASON = {
    "expired": "expired",
    "not yet valid": "notYetValid",
    "wrong audience": "audience",
    "wrong issuer": "issuer",
    "wrong tenant": "tenant",
    "HS256 with the public key as secret": "algorithm",
    "alg none": "algorithm",
    "unknown kid": "unknownKey",
    "known kid, other key": "signature",
    "tampered payload": "signature",
    "no exp": "missingClaim",
    "garbage": "malformed",
}


@pytest.fixture
def entra() -> Iterator[FakeEntra]:
    with fake_entra() as e:
        yield e


@pytest.fixture
async def keys(entra: FakeEntra) -> AsyncIterator[JwksCache]:
    cache = JwksCache(entra.jwks_url, min_refresh_seconds=300)
    yield cache
    await cache.close()


def validator(keys: JwksCache, leeway: int = 30) -> TokenValidator:
    return TokenValidator(keys, audiences=[AUDIENCE], issuers=[ISSUER], tenant_id=TENANT, leeway_seconds=leeway)


async def test_valid_token_gives_the_caller(entra: FakeEntra, keys: JwksCache) -> None:
    token = entra.mint(oid="o-1", azp="app-1", roles=["DICOM Data Reader"])
    principal = await validator(keys).validate(token)
    assert (principal.oid, principal.tid, principal.app_id, principal.roles) == (
        "o-1",
        TENANT,
        "app-1",
        ("DICOM Data Reader",),
    )


async def test_v1_token_appid_is_the_client(entra: FakeEntra, keys: JwksCache) -> None:
    principal = await validator(keys).validate(entra.mint(azp=None, appid="app-v1"))
    assert principal.app_id == "app-v1"


@pytest.mark.parametrize("name", sorted(EXPECTED_REASON))
async def test_forged_token_is_refused(entra: FakeEntra, keys: JwksCache, name: str) -> None:
    token = forged_tokens(entra)[name]
    with pytest.raises(InvalidTokenError) as info:
        await validator(keys).validate(token)
    assert info.value.reason == EXPECTED_REASON[name]
    assert token not in str(info.value)


async def test_leeway_is_bounded(entra: FakeEntra, keys: JwksCache) -> None:
    now = int(time.time())
    just_expired = entra.mint(exp=now - 20)
    assert (await validator(keys, leeway=30).validate(just_expired)).oid
    with pytest.raises(InvalidTokenError, match="expired"):
        await validator(keys, leeway=5).validate(just_expired)
    with pytest.raises(ValueError, match="leeway"):
        validator(keys, leeway=61)


async def test_unknown_kid_refreshes_at_most_once_per_interval(entra: FakeEntra, keys: JwksCache) -> None:
    v = validator(keys)
    await v.validate(entra.mint())
    assert entra.requests == 1
    for _ in range(5):
        with pytest.raises(InvalidTokenError, match="unknownKey"):
            await v.validate(entra.mint(kid="rogue", key=new_key()))
    assert entra.requests == 1  # fetched at start, and the interval has not passed


async def test_key_rollover_is_picked_up_on_unknown_kid(entra: FakeEntra) -> None:
    cache = JwksCache(entra.jwks_url, min_refresh_seconds=0)
    try:
        v = validator(cache)
        await v.validate(entra.mint())
        entra.keys["key-2"] = new_key()
        assert (await v.validate(entra.mint(kid="key-2"))).oid
        assert entra.requests == 2
    finally:
        await cache.close()


async def test_no_keys_is_unavailable_never_allowed(entra: FakeEntra, keys: JwksCache) -> None:
    entra.available = False
    with pytest.raises(KeysUnavailableError):
        await validator(keys).validate(entra.mint())


async def test_keys_kept_when_a_later_refresh_fails(entra: FakeEntra) -> None:
    cache = JwksCache(entra.jwks_url, min_refresh_seconds=0)
    try:
        v = validator(cache)
        await v.validate(entra.mint())
        entra.available = False
        with pytest.raises(InvalidTokenError, match="unknownKey"):
            await v.validate(entra.mint(kid="rogue", key=new_key()))
        assert (await v.validate(entra.mint())).oid
    finally:
        await cache.close()


def test_builtin_roles_and_names() -> None:
    roles = RoleMap()
    assert roles.actions(["DICOM Data Reader"]) == {Action.READ}
    assert roles.actions(["DICOM.Data.Reader"]) == {Action.READ}
    assert roles.actions(["dicom_data_owner"]) == {Action.READ, Action.WRITE, Action.DELETE, Action.ADMIN}
    assert roles.actions(["Something Else"]) == set()
    assert roles.actions([]) == set()
    assert normalise_role("DICOM Data Owner") == "dicomdataowner"


def test_configured_roles() -> None:
    mapping = parse_role_map("Radiologist=read; Uploader=read,write;;")
    assert mapping == {"Radiologist": ("read",), "Uploader": ("read", "write")}
    roles = RoleMap(mapping)
    assert roles.allows(["Uploader"], Action.WRITE)
    assert not roles.allows(["Uploader"], Action.DELETE)
    assert roles.allows([], Action.PUBLIC)
    for bad in ("Radiologist", "=read", "Radiologist=fly", "Radiologist=public"):
        with pytest.raises(ValueError, match=r"\S"):
            parse_role_map(bad)
