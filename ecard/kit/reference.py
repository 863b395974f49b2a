"""The API reference page at /schema: Redoc, served from the package (assets/), so that it works offline.

The bundle is redoc 2.5.4's `bundles/redoc.standalone.js` from npm (sha256 dcaf7661...f89500b), MIT licensed
(assets/redoc.LICENSE), with one change: the "powered by" logo it fetched from cdn.redoc.ly is gone
(`sed -i 's|src:"https://cdn.redoc.ly/redoc/logo-mini.svg"|src:""|'`). To update it, take another release's file
the same way and note it here. The page names no other host: no CDN script, no web fonts, no favicon; the OpenAPI
document itself is inlined in the page. tests/ops/test_reference.py renders it in a browser cut off from others."""

from __future__ import annotations

from importlib import resources

from litestar import Response, Router, get
from litestar.openapi.plugins import RedocRenderPlugin

BUNDLE = "redoc.standalone.js"
ASSETS_PATH = "/assets"


class OfflineRedoc(RedocRenderPlugin):
    """Redoc at the root of the OpenAPI router (/schema), its script served beside it (/schema/assets/...)."""

    def __init__(self) -> None:
        super().__init__(path="/", google_fonts=False, favicon="", js_url=f"/schema{ASSETS_PATH}/{BUNDLE}")
        self._bundle = (resources.files("ecard.kit") / "assets" / BUNDLE).read_bytes()

    def receive_router(self, router: Router) -> None:
        self.js_url = f"{router.path.rstrip('/')}{ASSETS_PATH}/{BUNDLE}"
        bundle = self._bundle

        @get(f"{ASSETS_PATH}/{BUNDLE}", sync_to_thread=False, include_in_schema=False)
        def serve_bundle() -> Response[bytes]:
            return Response(
                bundle,
                media_type="text/javascript; charset=utf-8",
                headers={"Cache-Control": "public, max-age=86400"},
            )

        router.register(serve_bundle)
