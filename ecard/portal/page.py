"""The cross-device waiting page: a QR of the app link, the two-digit number, and a small poller."""

from __future__ import annotations

import base64
import html
import secrets

from ecard.kit.qr import png

# Nothing loads from elsewhere; the one script and style run by nonce; the page may only call its own origin.
CSP = (
    "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; img-src data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

_PAGE = """<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>电子社保卡登录 · {portal}</title>
<style nonce="{nonce}">
body {{ font-family: system-ui, sans-serif; max-width: 30rem; margin: 2rem auto; padding: 0 1rem; text-align: center; }}
#qr {{ width: 16rem; height: 16rem; image-rendering: pixelated; }}
#number {{ font-size: 3.5rem; font-weight: bold; letter-spacing: 0.3em; margin: 0.5rem 0; }}
</style>
</head>
<body>
<h1>用电子社保卡登录 {portal}</h1>
<p>请用电子社保卡 App 扫描二维码，并在手机上选择下面的数字。<br>
Scan the code with the e-card app and pick this number on your phone.</p>
<img id="qr" alt="登录二维码 login QR code" src="data:image/png;base64,{qr}">
<p id="number" aria-label="两位数字 number">{number}</p>
<p id="status" role="status" data-status-url="{status_url}" data-secret="{secret}">等待确认 · Waiting for approval</p>
<p>此页 {ttl} 秒内有效。This page is valid for {ttl} s.</p>
<script nonce="{nonce}">
(function () {{
  var box = document.getElementById("status");
  var url = box.getAttribute("data-status-url");
  var secret = box.getAttribute("data-secret");
  var words = {{ approved: "已确认，正在返回 · Approved, returning",
    denied: "已拒绝 · Declined", failed: "数字不符，登录已结束 · Wrong number, login ended",
    expired: "已过期 · Expired" }};
  function poll() {{
    fetch(url, {{ headers: {{ "Ecard-Login-Secret": secret }}, cache: "no-store", credentials: "omit" }})
      .then(function (answer) {{
        if (!answer.ok) {{ throw new Error("ended"); }}
        return answer.json();
      }})
      .then(function (body) {{
        if (body.status === "pending") {{ setTimeout(poll, 1000); return; }}
        box.textContent = words[body.status] || body.status;
        if (body.redirect_uri) {{ window.location.replace(body.redirect_uri); }}
      }})
      .catch(function () {{ box.textContent = "登录已结束 · This login has ended"; }});
  }}
  poll();
}})();
</script>
</body>
</html>
"""


def waiting_page(portal_name: str, link: str, number: int, status_url: str, secret: str, ttl_s: int) -> tuple[str, str]:
    """The page and the Content-Security-Policy it runs under."""
    nonce = secrets.token_urlsafe(16)
    page = _PAGE.format(
        portal=html.escape(portal_name),
        nonce=nonce,
        qr=base64.b64encode(png(link)).decode(),
        number=f"{number:02d}",
        status_url=html.escape(status_url),
        secret=html.escape(secret),
        ttl=ttl_s,
    )
    return page, CSP.format(nonce=nonce)
