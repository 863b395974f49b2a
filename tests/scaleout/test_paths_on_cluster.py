"""The hot path, nonces, revocation, lockouts, throttles and sessions, on a Redis Cluster of 3 masters.

The tests of each room that cover these paths run here once more, unchanged, with ECARD_REDIS_URL naming the
cluster (see conftest.py); below them, what only a cluster shows: where the keys of one step lie."""

from __future__ import annotations

import pytest

from ecard.kit import cache
from ecard.kit.infra import create_redis
from tests.clients.test_signed_requests import (
    test_a_refused_signature_does_not_spend_its_nonce,
    test_an_exact_replay_of_a_code_request_is_refused,
    test_the_same_nonce_string_from_another_client_is_fine,
    test_the_same_nonce_twice_from_one_key_is_refused_as_nonce_reused,
)
from tests.codes.test_codes import test_a_fresh_code_is_accepted_and_an_expired_one_is_not
from tests.codes.test_issuer_keys import (
    no_periodic_refresh,
    test_a_key_revoked_from_the_command_line_is_refused_at_once,
    test_revoking_a_retired_key_refuses_its_codes_and_keeps_the_active_key,
)
from tests.operators.conftest import addresses
from tests.operators.test_lockout import (
    test_a_source_that_fails_locks_itself_out_and_not_the_operator,
    test_concurrent_wrong_logins_from_many_sources_get_no_more_checks_than_the_account_limit,
    test_concurrent_wrong_logins_from_one_source_get_no_more_checks_than_the_limit,
    test_failures_from_many_sources_lock_the_account_end_its_sessions_and_lock_longer_each_time,
)
from tests.operators.test_sessions import (
    test_a_totp_code_sent_twice_at_once_opens_one_session,
    test_logging_out_everywhere_ends_every_session_of_the_operator_only,
    test_right_password_and_totp_open_a_session,
)
from tests.operators.test_throttle import (
    test_a_source_over_its_allowance_is_throttled_before_any_hashing,
    test_a_username_over_its_allowance_is_throttled_from_every_source,
)
from tests.scaleout.cluster import RedisClusterProcesses
from tests.support import World, problem
from tests.verify.test_verification import (
    test_a_replayed_code_is_refused_and_raised_as_a_risk_event,
    test_a_reused_nonce_is_refused_without_taking_the_fresh_code_it_carries,
    test_a_suspended_card_is_refused_at_once_and_the_code_is_spent,
    test_an_entitled_library_accepts_a_fresh_code,
    test_an_unknown_item_is_refused_without_using_up_the_code,
    test_codes_of_a_revoked_key_are_refused_and_codes_of_its_successor_accepted,
)

__all__ = [
    "addresses",
    "no_periodic_refresh",
    "test_a_fresh_code_is_accepted_and_an_expired_one_is_not",
    "test_a_key_revoked_from_the_command_line_is_refused_at_once",
    "test_a_refused_signature_does_not_spend_its_nonce",
    "test_a_replayed_code_is_refused_and_raised_as_a_risk_event",
    "test_a_reused_nonce_is_refused_without_taking_the_fresh_code_it_carries",
    "test_a_source_over_its_allowance_is_throttled_before_any_hashing",
    "test_a_source_that_fails_locks_itself_out_and_not_the_operator",
    "test_a_suspended_card_is_refused_at_once_and_the_code_is_spent",
    "test_a_totp_code_sent_twice_at_once_opens_one_session",
    "test_a_username_over_its_allowance_is_throttled_from_every_source",
    "test_an_entitled_library_accepts_a_fresh_code",
    "test_an_exact_replay_of_a_code_request_is_refused",
    "test_an_unknown_item_is_refused_without_using_up_the_code",
    "test_codes_of_a_revoked_key_are_refused_and_codes_of_its_successor_accepted",
    "test_concurrent_wrong_logins_from_many_sources_get_no_more_checks_than_the_account_limit",
    "test_concurrent_wrong_logins_from_one_source_get_no_more_checks_than_the_limit",
    "test_failures_from_many_sources_lock_the_account_end_its_sessions_and_lock_longer_each_time",
    "test_logging_out_everywhere_ends_every_session_of_the_operator_only",
    "test_revoking_a_retired_key_refuses_its_codes_and_keeps_the_active_key",
    "test_right_password_and_totp_open_a_session",
    "test_the_same_nonce_string_from_another_client_is_fine",
    "test_the_same_nonce_twice_from_one_key_is_refused_as_nonce_reused",
]


def _keys(cluster: RedisClusterProcesses, prefix: str) -> dict[str, int]:
    """Every key under `prefix` in the cluster, with its slot (read from each master)."""
    found: dict[str, int] = {}
    for node in cluster.nodes:
        with node.client() as client:
            if client.info("replication")["role"] != "master":
                continue
            for key in client.scan_iter(match=f"{prefix}*"):
                name = key.decode()
                found[name] = int(client.execute_command("CLUSTER", "KEYSLOT", name))
    return found


async def test_a_codes_claim_and_its_keys_revocation_flag_lie_in_one_slot(
    world: World, redis_cluster: RedisClusterProcesses
) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device("张小三")
    for _ in range(8):
        answer = await world.verify(merchant, await world.code(device))
        assert answer.status_code == 200, answer.text
    prefix: str = world.app.state.settings.redis_prefix
    keys = _keys(redis_cluster, prefix)

    claims = {name: slot for name, slot in keys.items() if ":cti:" in name}
    assert len(claims) == 8
    # codes spread over the shards, and so over the masters
    assert len({name.split(":cti:")[0] for name in claims}) > 1
    # every revocation flag has a copy in every shard; the claim's shard holds the flag of its code's key
    ring = world.app.state.key_ring
    [kid] = [key.kid for key in ring._by_kid.values() if key.status == "active"]
    await ring.revoke(kid, "test")
    flags = {name: slot for name, slot in _keys(redis_cluster, prefix).items() if ":revoked-kid:" in name}
    assert len(flags) == cache.SHARDS
    for name, slot in claims.items():
        shard = name.removeprefix(prefix).split(":")[0]
        assert flags[f"{prefix}{shard}:revoked-kid:{kid.hex()}"] == slot


async def test_a_nonce_lies_in_its_client_keys_slot_and_a_login_guard_in_its_usernames(
    world: World, redis_cluster: RedisClusterProcesses
) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device("张小三")
    await world.verify(merchant, await world.code(device))
    answer = await world.client.post(
        "/v1/admin/sessions", json={"username": "nobody-here", "password": "wrong-password-123", "totp": "000000"}
    )
    assert problem(answer)[0] == 401
    prefix: str = world.app.state.settings.redis_prefix
    keys = _keys(redis_cluster, prefix)
    nonces = {name.split("{")[1].split("}")[0]: slot for name, slot in keys.items() if ":nonce:" in name}
    # the channel that enrolled the device, the device that asked for the code, the merchant that verified it
    assert {merchant.key_id, device.key_id} < set(nonces)
    with redis_cluster.nodes[0].client() as client:
        for key_id, slot in nonces.items():
            assert int(client.execute_command("CLUSTER", "KEYSLOT", key_id)) == slot
    # the username's window, its (username, source) guard and its account guard: one slot, one Lua script
    by_username: dict[str, set[int]] = {}
    for name, slot in keys.items():
        if ":login:{" in name:
            by_username.setdefault(name.split("{")[1].split("}")[0], set()).add(slot)
    assert len(by_username) == 2  # the test's operator, and the username nobody has
    assert all(len(slots) == 1 for slots in by_username.values())


def test_the_cluster_has_three_masters_each_with_a_replica(redis_cluster: RedisClusterProcesses) -> None:
    roles = []
    for node in redis_cluster.nodes:
        with node.client() as client:
            roles.append(client.info("replication")["role"])
    assert sorted(roles) == ["master"] * 3 + ["slave"] * 3


@pytest.mark.parametrize("url", ["redis+cluster://", "redis+cluster://127.0.0.1", "redis+cluster://h:1,h:port"])
def test_a_cluster_url_without_host_and_port_is_refused_with_what_it_wants(url: str) -> None:
    with pytest.raises(ValueError, match=r"host:port\[,host:port\.\.\.\]"):
        create_redis(url)
