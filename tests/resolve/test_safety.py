"""The address rule (pure): which addresses the resolver may connect to."""

from __future__ import annotations

import ipaddress

import pytest

from plc.resolve import AddressPolicy, ResolverSettings, UnsafeAddress, is_public_address

REFUSED = [
    "127.0.0.1",
    "127.8.9.10",
    "10.0.0.1",
    "10.255.255.255",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # shared address space (CGNAT)
    "0.0.0.0",
    "255.255.255.255",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "192.0.2.1",  # documentation
    "198.18.0.1",  # benchmarking
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "ff0e::1",  # global-scope multicast is still multicast
    "2001:db8::1",
    "fec0::1",  # site-local (deprecated)
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
]

ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "2001:4860:4860::8888",
    "2606:4700:4700::1111",
    "::ffff:8.8.8.8",
    "2002:808:808::1",  # 6to4 of 8.8.8.8
]


@pytest.mark.parametrize("text", REFUSED)
def test_non_public_addresses_are_refused_by_default(text: str) -> None:
    address = ipaddress.ip_address(text)
    assert not is_public_address(address)
    policy = AddressPolicy()
    assert not policy.is_allowed(address)
    with pytest.raises(UnsafeAddress):
        policy.ensure_allowed("evil.test", [address])


@pytest.mark.parametrize("text", ALLOWED)
def test_public_addresses_are_allowed(text: str) -> None:
    address = ipaddress.ip_address(text)
    assert is_public_address(address)
    AddressPolicy().ensure_allowed("good.test", [address])


def test_one_private_address_refuses_the_whole_host() -> None:
    addresses = [ipaddress.ip_address("8.8.8.8"), ipaddress.ip_address("10.0.0.1")]
    with pytest.raises(UnsafeAddress, match="10.0.0.1"):
        AddressPolicy().ensure_allowed("mixed.test", addresses)


@pytest.mark.parametrize("text", REFUSED)
def test_allow_private_networks_allows_everything(text: str) -> None:
    assert AddressPolicy(allow_private=True).is_allowed(ipaddress.ip_address(text))


def test_allowed_networks_exempt_only_their_blocks() -> None:
    settings = ResolverSettings(allowed_networks="10.1.0.0/16, 127.0.0.1/32")
    policy = AddressPolicy.from_settings(settings)
    assert policy.is_allowed(ipaddress.ip_address("10.1.2.3"))
    assert policy.is_allowed(ipaddress.ip_address("::ffff:10.1.2.3"))
    assert policy.is_allowed(ipaddress.ip_address("127.0.0.1"))
    assert not policy.is_allowed(ipaddress.ip_address("127.0.0.2"))
    assert not policy.is_allowed(ipaddress.ip_address("10.2.0.1"))
    assert not policy.is_allowed(ipaddress.ip_address("::1"))


def test_settings_defaults_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = ResolverSettings()
    assert defaults.time_budget_s == 3.0
    assert defaults.allow_private_networks is False
    assert defaults.handle_http_scheme == "https"
    assert defaults.handle_http_port is None
    monkeypatch.setenv("PLC_RESOLVE_TIME_BUDGET_S", "1.5")
    monkeypatch.setenv("PLC_RESOLVE_DNS_NAMESERVERS", "1.1.1.1,8.8.8.8")
    monkeypatch.setenv("PLC_RESOLVE_ALLOWED_NETWORKS", '["10.0.0.0/8"]')
    monkeypatch.setenv("PLC_RESOLVE_ALLOW_PRIVATE_NETWORKS", "true")
    settings = ResolverSettings()
    assert settings.time_budget_s == 1.5
    assert settings.dns_nameservers == ["1.1.1.1", "8.8.8.8"]
    assert settings.allowed_networks == ["10.0.0.0/8"]
    assert settings.allow_private_networks is True


def test_settings_refuse_bad_values() -> None:
    with pytest.raises(ValueError):
        ResolverSettings(dns_nameservers=["not-an-ip"])
    with pytest.raises(ValueError):
        ResolverSettings(allowed_networks=["10.0.0.0/33"])
    with pytest.raises(ValueError):
        ResolverSettings(time_budget_s=0)
    with pytest.raises(ValueError):
        ResolverSettings(handle_http_scheme="ftp")
