"""Who an anonymous caller is, for the budgets: its address (an IPv6 network, not one of its
2^64 addresses), the client a trusted reverse proxy names, or one shared requester.

The budgets are per requester (docs/discovery.md): a caller who can become a new requester at
will has no budget. These tests are the attacks: rotating IPv6 addresses within one's own /64,
and forging ``X-Forwarded-For``; and the settings a site behind a proxy needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from snakemake_executor_plugin_fedgen.errors import ConfigError

from snakemake_fedgen.beacon.config import AnonymousSettings
from tests.beacon.conftest import audit_records, beacon_node

BODY = {"meta": {"apiVersion": "v2.1.1"}}


def _ask(client: Any, headers: dict[str, str] | None = None) -> Any:
    body = {**BODY, "query": {"filters": [{"id": "NCIT:C16576"}]}}
    return client.post("/api/individuals", json=body, headers=headers or {})


def _requesters(state: Path) -> set[str]:
    return {r["requester"] for r in audit_records(state)}


def test_ipv6_caller__every_address_of_its_64_is_one_requester(federation: Path, tmp_path: Path):
    # An IPv6 host is given a /64: 2^64 addresses, each a fresh budget if keyed by address.
    state = tmp_path / "state"
    for address in ("2001:db8:5:9::1", "2001:db8:5:9::2", "2001:db8:5:9:dead:beef:0:7"):
        with beacon_node(federation, "A", state, client_address=address) as client:
            assert _ask(client).status_code == 200
    assert _requesters(state) == {"anonymous:2001:db8:5:9::/64"}
    # Another /64 is another requester; IPv4 stays per address.
    assert (
        AnonymousSettings().requester_of("2001:db8:5:a::1", None) == "anonymous:2001:db8:5:a::/64"
    )
    assert AnonymousSettings().requester_of("192.0.2.7", None) == "anonymous:192.0.2.7"
    # An IPv4 client on a dual-stack socket is that IPv4 address, not the ::/64 of all of them.
    assert AnonymousSettings().requester_of("::ffff:192.0.2.7", None) == "anonymous:192.0.2.7"


def test_forged_forwarded_for__ignored_without_a_trusted_proxy(federation: Path, tmp_path: Path):
    state = tmp_path / "state"
    with beacon_node(federation, "A", state, client_address="192.0.2.7") as client:
        for i in range(5):
            assert _ask(client, {"X-Forwarded-For": f"198.51.100.{i}"}).status_code == 200
    assert _requesters(state) == {"anonymous:192.0.2.7"}


def test_trusted_proxy__names_the_client_and_a_forged_entry_is_not_believed(
    federation: Path, tmp_path: Path
):
    state = tmp_path / "state"
    anonymous = {"trusted_proxies": ["10.1.0.0/16"]}
    with beacon_node(
        federation, "A", state, anonymous=anonymous, client_address="10.1.0.5"
    ) as proxy:
        # The proxy appends the address it saw; what the client wrote before it is its own.
        assert _ask(proxy, {"X-Forwarded-For": "198.51.100.1"}).status_code == 200
        assert _ask(proxy, {"X-Forwarded-For": "203.0.113.9, 198.51.100.2"}).status_code == 200
        # A chain of trusted proxies: the client is the last address no proxy of ours owns.
        assert _ask(proxy, {"X-Forwarded-For": "198.51.100.3, 10.1.0.7"}).status_code == 200
        # No header from the proxy: the proxy's own address (all its callers share it).
        assert _ask(proxy).status_code == 200
    assert _requesters(state) == {
        "anonymous:198.51.100.1", "anonymous:198.51.100.2", "anonymous:198.51.100.3",
        "anonymous:10.1.0.5",
    }  # fmt: skip
    # A caller that is not a trusted proxy cannot name another client.
    other = tmp_path / "other"
    with beacon_node(
        federation, "A", other, anonymous=anonymous, client_address="192.0.2.7"
    ) as client:
        assert _ask(client, {"X-Forwarded-For": "198.51.100.1"}).status_code == 200
    assert _requesters(other) == {"anonymous:192.0.2.7"}


def test_shared_requester__every_anonymous_caller_spends_one_budget(
    federation: Path, tmp_path: Path
):
    anonymous = {"requester": "shared"}
    requesters = set()
    for i, address in enumerate(("192.0.2.7", "198.51.100.1", "2001:db8::1")):
        state = tmp_path / f"state{i}"
        with beacon_node(
            federation, "A", state, anonymous=anonymous, client_address=address
        ) as client:
            assert _ask(client).status_code == 200
        requesters |= _requesters(state)
    assert requesters == {"anonymous:*"}


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"requester": "ip"}, r"beacon\.anonymous\.requester must be address or shared"),
        (
            {"trusted_proxies": ["10.1.0.0/33"]},
            r"beacon\.anonymous\.trusted_proxies.*10\.1\.0\.0/33",
        ),
        ({"trusted_proxies": "10.1.0.1"}, r"beacon\.anonymous\.trusted_proxies must be a list"),
        ({"proxies": []}, r"unknown key.*beacon\.anonymous\.proxies"),
    ],
)
def test_anonymous_settings__bad_values_are_refused_naming_the_key(block, message):
    with pytest.raises(ConfigError, match=message):
        AnonymousSettings.from_mapping(block)
