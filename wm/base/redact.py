"""Credentials never reach a file or a log line. A camera URL may carry a password
(`rtsp://user:pass@host/...`, or `?pwd=...` for some IP cameras): everything wm writes or
shows names the camera by `redact(url)`; the password itself is put into the URL only
when the camera is opened, from the settings file (0600) or WM_CAMERA_PASSWORD."""
from __future__ import annotations

import os
import re
from urllib.parse import quote

MASK = "***"
PASSWORD_ENV = "WM_CAMERA_PASSWORD"

# scheme://user:password@ — the password runs to the last '@' before the path, so one
# with an unescaped '@' in it is still hidden whole
_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/?#@\s]*):(?P<pw>[^\s/?#]*)@")
_QUERY = re.compile(r"(?P<head>[?&;](?:password|passwd|pass|pwd|secret|token|key)=)[^&;#\s]*",
                    re.IGNORECASE)
# scheme://user@host (a user, no password): where WM_CAMERA_PASSWORD goes
_USER_ONLY = re.compile(r"^(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/?#@\s]+)@")


def redact(text: str) -> str:
    """`text` with the password of every URL in it replaced by ***: the user name and the
    host stay, so a person still sees which camera it is."""
    text = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@" if m["pw"] else m[0], text)
    return _QUERY.sub(lambda m: m["head"] + MASK, text)


def has_secret(text: str) -> bool:
    return redact(text) != text


def with_password(url: str, password: str | None) -> str:
    """The URL to open: `password` (percent-encoded) put into a `scheme://user@host` URL
    that names a user and no password; any other URL as it is."""
    if not password:
        return url
    m = _USER_ONLY.match(url)
    if m is None:
        return url
    return f"{m['head']}:{quote(password, safe='')}@{url[m.end():]}"


def camera_url(spec: str, environ: dict | None = None) -> str:
    """What the camera opens: the spec, with the password from WM_CAMERA_PASSWORD when
    the spec names a user without one."""
    env = os.environ if environ is None else environ
    return with_password(spec, env.get(PASSWORD_ENV))
