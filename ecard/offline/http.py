"""POST /v1/offline-taps: a terminal uploads what it accepted while offline and learns how each tap stands."""

from __future__ import annotations

from litestar import Controller, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from ecard.kit.edge import SIGNED_PROBLEMS, signed_by
from ecard.kit.principal import ClientKind, Principal
from ecard.kit.problems import problems
from ecard.offline.models import Upload, UploadAnswer
from ecard.offline.service import OfflineTaps


class OfflineTapController(Controller):
    path = "/v1/offline-taps"
    tags = ["verification"]  # noqa: RUF012

    @post(
        "/",
        status_code=200,
        dependencies={"principal": signed_by(ClientKind.TERMINAL)},
        summary="Upload offline taps (terminal-signed); idempotent per tap_id, each judged as of its tapped_at",
        responses=problems(*SIGNED_PROBLEMS, "forbidden"),
    )
    async def upload(
        self,
        offline_taps: NamedDependency[OfflineTaps],
        principal: NamedDependency[Principal],
        data: JSONBody[Upload],
    ) -> UploadAnswer:
        return UploadAnswer(results=await offline_taps.upload(principal, data.taps))
