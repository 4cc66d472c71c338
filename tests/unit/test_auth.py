"""API keys: sources come from the key's configuration, never from the client, and keys never leak."""

from shared.auth import anonymous_source, authenticate, principals
from shared.settings import ApiKeyGrant, TouchlineSettings


def test_keys_map_to_their_source_and_scopes() -> None:
    table = principals(
        {"k-web": ApiKeyGrant(source="web-shop", scopes=["events:write"]), "k-crm": ["timeline:read"]}
    )
    web = authenticate("k-web", table)
    crm = authenticate("k-crm", table)
    assert web is not None
    assert (web.source, web.scopes) == ("web-shop", frozenset({"events:write"}))
    assert crm is not None
    assert crm.scopes == frozenset({"timeline:read"})


def test_unknown_or_partial_keys_are_refused() -> None:
    table = principals({"k-web": ["events:write"]})
    for presented in ("", "k-we", "k-web ", "K-WEB", "k-web-2"):
        assert authenticate(presented, table) is None


def test_a_key_without_a_named_source_gets_a_stable_name_that_does_not_reveal_it() -> None:
    source = anonymous_source("super-secret-key")
    assert source == anonymous_source("super-secret-key")
    assert "secret" not in source
    assert source.startswith("key-")


def test_both_key_forms_are_read_from_the_environment(monkeypatch: object) -> None:
    import os

    os.environ["TOUCHLINE_API_KEYS"] = '{"a": ["events:write"], "b": {"source": "pos", "scopes": ["x"]}}'
    try:
        keys = TouchlineSettings().api_keys
    finally:
        del os.environ["TOUCHLINE_API_KEYS"]
    assert keys == {"a": ["events:write"], "b": ApiKeyGrant(source="pos", scopes=["x"])}
