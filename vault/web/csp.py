"""The patient's space's security headers, built in one place (as Warehouse's csp.py).

Every asset ships in the package and is served from the vault itself, so the policy
names no other host and allows no inline script or style. ``form-action`` is left out on
purpose: signing out is a form whose answer redirects to the identity provider's logout
page, which Chromium would block under ``form-action 'self'``.
"""

from __future__ import annotations

POLICY: dict[str, tuple[str, ...]] = {
    "default-src": ("'none'",),
    "script-src": ("'self'",),
    "style-src": ("'self'",),
    "img-src": ("'self'",),
    "font-src": ("'self'",),
    "connect-src": ("'self'",),
    # The viewer shows PDF documents in a frame of the vault's own origin.
    "frame-src": ("'self'",),
    "object-src": ("'none'",),
    "base-uri": ("'none'",),
    "frame-ancestors": ("'none'",),
}

# A document's bytes, when shown in the viewer's frame: nothing in them may run or load
# anything, and only the vault's own pages may frame them.
CONTENT_POLICY: dict[str, tuple[str, ...]] = {
    "default-src": ("'none'",),
    "img-src": ("'self'",),
    "style-src": ("'unsafe-inline'",),
    "frame-ancestors": ("'self'",),
}


def render(policy: dict[str, tuple[str, ...]]) -> str:
    return "; ".join(f"{name} {' '.join(values)}" for name, values in policy.items())


COMMON = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}

PAGE_HEADERS = {
    **COMMON,
    "Content-Security-Policy": render(POLICY),
    "X-Frame-Options": "DENY",
}

CONTENT_HEADERS = {
    **COMMON,
    "Content-Security-Policy": render(CONTENT_POLICY),
    "X-Frame-Options": "SAMEORIGIN",
}

# Static assets change only with the package: cached, but never sniffed or framed.
ASSET_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "public, max-age=3600",
}
