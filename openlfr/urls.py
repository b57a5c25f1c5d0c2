"""Camera URLs: the one way to show one, and the admin's allow-list of the hosts a camera may be read from.

A camera URL is a secret: ``rtsp://user:password@host/path`` and ``http://host/x?token=...`` carry the camera's
credentials. Wherever a URL is shown (answers, pages, logs, audit entries, notes, metrics, errors) it goes through
:func:`redact_url` (or :func:`redact_text` for a message that may quote one); the real URL is kept sealed at rest
(``openlfr.services.camera_secrets``) and opened only where the capture reads the camera.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urlsplit, urlunsplit

from openlfr.errors import OpenLFRError

HIDDEN = "***"
# A URL inside free text (an FFmpeg error, a note): a scheme, "://", then anything up to a space or a quote.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{1,15}://[^\s'\"<>`]+")


class CameraHostRefused(OpenLFRError):
    """A camera's host is not among those the admin allows (``OPENLFR_CAMERA_ALLOWED_HOSTS``)."""


def redact_url(url: str) -> str:
    """``url`` with its password, query values and fragment replaced by ``***`` (the user name, host, port and path
    stay, so a person can tell cameras apart); a file path or ``camera:N`` comes back as it is."""
    try:
        parts = urlsplit(url)
        if not parts.netloc:
            return url
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user, has_password, _ = userinfo.partition(":")
            netloc = f"{user}:{HIDDEN}@{host}" if has_password else f"{user}@{host}"
        query = "&".join(
            f"{key}={HIDDEN}" if has_value else HIDDEN
            for key, has_value, _ in (item.partition("=") for item in parts.query.split("&") if item)
        )
        return urlunsplit((parts.scheme, netloc, parts.path, query, HIDDEN if parts.fragment else ""))
    except ValueError:  # not a URL urllib can read (a broken IPv6 address...): show nothing of it but its scheme
        return f"{url.split(':', 1)[0][:16]}://{HIDDEN}"


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted (an error message that quotes the URL it failed on)."""
    return _URL_IN_TEXT.sub(lambda found: redact_url(found.group(0)), text)


def url_destination(url: str) -> str:
    """Where ``url`` leads and nothing more: its scheme, host and port. A sink is described this way, never by
    :func:`redact_url`, since a webhook's path is often its token (Slack, Teams, Discord); a file path (a jsonl
    sink) comes back as it is."""
    try:
        parts = urlsplit(url)
        if not parts.netloc:
            return url
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{parts.hostname or ''}{port}"
    except ValueError:
        return f"{url.split(':', 1)[0][:16]}://{HIDDEN}"


def sink_error_text(text: str, url: str, secret: str | None) -> str:
    """A sink's error as it may be stored, logged and shown: its address and secret taken out, and any URL in it
    reduced to its destination."""
    text = _URL_IN_TEXT.sub(lambda found: url_destination(found.group(0)), text)
    for hidden in (url, secret):
        if hidden:
            text = text.replace(hidden, HIDDEN)
    return text


def holds_secret(url: str) -> bool:
    """Whether showing ``url`` as it is would show a secret (then it is sealed at rest)."""
    return redact_url(url) != url


def check_camera_host(url: str, allowed: str) -> None:
    """Refuse (``CameraHostRefused``) a network camera whose host is not allowed. ``allowed`` is the admin's list
    (``OPENLFR_CAMERA_ALLOWED_HOSTS``): networks in CIDR notation and host names, separated by commas or spaces; a
    name starting with a dot allows every name under it; empty allows every host. A name not in the list is resolved
    and allowed only if every address it has lies in an allowed network. Files and local devices have no host."""
    entries = [entry.strip().lower().rstrip(".") or "." for entry in re.split(r"[,\s]+", allowed) if entry.strip()]
    if not entries:
        return
    try:
        host = (urlsplit(url).hostname or "").rstrip(".")
    except ValueError:
        raise CameraHostRefused(f"{redact_url(url)} is not a URL whose host can be read") from None
    if not host:
        return
    networks, names = [], []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            names.append(entry)
    if any(host == name or (name.startswith(".") and host.endswith(name)) for name in names):
        return
    try:
        addresses = {ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in socket.getaddrinfo(host, None)}
    except (OSError, UnicodeError, ValueError):
        addresses = set()
    refused = [str(address) for address in addresses if not any(address in network for network in networks)]
    if not addresses or refused:
        reached = f" (it resolves to {', '.join(sorted(refused))})" if refused and not _is_address(host) else ""
        raise CameraHostRefused(
            f"camera host {host}{reached} is not among the camera networks and hosts the admin allows "
            "(OPENLFR_CAMERA_ALLOWED_HOSTS)"
        )


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
