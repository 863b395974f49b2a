"""Server-rendered pages: one Jinja2 environment per room (escaped by default), a fresh nonce per answer, and the
headers every page carries (a strict CSP with no inline script or style but by that nonce, no caching of
personal data, no referrer).

A room renders with `Pages(<package>).render(name, frame_ancestors=..., **context)`; its templates are in
`<package>/templates/`. Every template gets `nonce` for its `<script nonce>` and `<style nonce>` tags."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import jinja2

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@dataclass(frozen=True, slots=True)
class Rendered:
    """A page and the headers it must be sent with."""

    html: str
    headers: dict[str, str]


def csp(nonce: str, frame_ancestors: str = "'none'") -> str:
    """Scripts and styles only by the answer's nonce or from this origin; requests only to this origin."""
    return (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; img-src 'self' data:; "
        f"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors {frame_ancestors}"
    )


class Pages:
    """The templates of one room."""

    def __init__(self, package: str) -> None:
        self._env = jinja2.Environment(
            loader=jinja2.PackageLoader(package, "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def render(self, name: str, *, frame_ancestors: str = "'none'", **context: object) -> Rendered:
        nonce = secrets.token_urlsafe(16)
        html = self._env.get_template(name).render(nonce=nonce, **context)
        headers = {
            "Content-Security-Policy": csp(nonce, frame_ancestors),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            **NO_STORE,
        }
        if frame_ancestors == "'none'":
            headers["X-Frame-Options"] = "DENY"
        return Rendered(html, headers)
