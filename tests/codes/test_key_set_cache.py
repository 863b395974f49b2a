"""GET /v1/issuer/keys serves an ETag and Cache-Control, so that a fleet of terminals refreshes with a 304."""

from __future__ import annotations

from tests.support import World


async def test_the_key_set_answers_304_to_a_terminal_that_has_it_and_200_once_it_changed(world: World) -> None:
    first = await world.client.get("/v1/issuer/keys")
    assert first.status_code == 200
    tag = first.headers["etag"]
    assert tag.startswith('"')
    assert tag.endswith('"')
    assert first.headers["cache-control"].startswith("public, max-age=")

    again = await world.client.get("/v1/issuer/keys")
    assert again.headers["etag"] == tag

    for asked in (tag, f"W/{tag}", f'"other", {tag}', "*"):
        unchanged = await world.client.get("/v1/issuer/keys", headers={"If-None-Match": asked})
        assert unchanged.status_code == 304, asked
        assert unchanged.content == b""
        assert unchanged.headers["etag"] == tag

    assert (await world.client.get("/v1/issuer/keys", headers={"If-None-Match": '"stale"'})).status_code == 200

    await world.app.state.key_ring.rotate("test")
    rotated = await world.client.get("/v1/issuer/keys", headers={"If-None-Match": tag})
    assert rotated.status_code == 200
    assert rotated.headers["etag"] != tag
    assert len(rotated.json()["keys"]) == len(first.json()["keys"]) + 1
