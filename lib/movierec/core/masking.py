"""Credentials out of everything the project prints or logs."""

from __future__ import annotations

import re
from typing import Any

# Hand-written rather than SQLAlchemy's URL.render_as_string(hide_password=True): that one masks
# only a password (a token-only userinfo such as https://ghp_xxx@host is printed as is), parses
# one URL rather than finding URLs inside an error message, and splits a password holding "@" at
# its first "@", printing the rest (postgresql://u:p@ss@host gives postgresql://u:***@ss@host).
# Greedy up to the last "@" before the path, so a stray "@" in a password is hidden too.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#\s]*)@")
# Query parameters that carry a credential: libpq's password, signed object-store URLs (sig),
# bearer tokens, API keys. Only inside a URI's query (after "?"), up to "&", ";", "#" or a space.
_SECRET_PARAM = re.compile(
    r"(?P<key>[?&;](?:password|passwd|pwd|sslpassword|secret|client_secret|token|access_token|"
    r"refresh_token|api_key|apikey|key|sig|signature)=)[^&;#\s]*", re.IGNORECASE)
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S*")


def mask_uri(text: str) -> str:
    """Hides passwords and tokens in `scheme://user:password@host` and in a URI's credential
    query parameters (`?password=`, `&sig=`, ...), anywhere in text."""
    def _mask(m: re.Match) -> str:
        user, sep, _ = m.group("userinfo").partition(":")
        return f"{m.group('scheme')}{user}:***@" if sep else f"{m.group('scheme')}***@"

    def _mask_query(m: re.Match) -> str:
        return _SECRET_PARAM.sub(lambda p: p.group("key") + "***", m.group(0))
    return _URI.sub(_mask_query, _USERINFO.sub(_mask, text))


def masked(node: Any) -> Any:
    """A copy of nested dicts and lists with every string passed through mask_uri."""
    if isinstance(node, dict):
        return {k: masked(v) for k, v in node.items()}
    if isinstance(node, list):
        return [masked(v) for v in node]
    return mask_uri(node) if isinstance(node, str) else node
