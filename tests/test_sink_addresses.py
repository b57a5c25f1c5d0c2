"""A webhook's path is often its token (Slack, Teams, Discord put the secret there): wherever a sink is named or
described — an ad-hoc scan's sink name (stored, logged), the audited sink settings, an error a send failed with —
only its scheme, host and port appear."""

from __future__ import annotations

from openlfr.alerts.outbox import adhoc_name
from openlfr.config_file import SinkSettings
from openlfr.services.sink_settings import shown
from openlfr.urls import HIDDEN, sink_error_text, url_destination

TOKEN = "T0AAAA/B0BBBB/pathtokenXYZ123"
HOOK = f"https://user:pw@hooks.example.org:8443/services/{TOKEN}?sig=querysecret#frag"


def test_a_destination_is_scheme_host_and_port_only() -> None:
    assert url_destination(HOOK) == "https://hooks.example.org:8443"
    assert url_destination("mqtt://broker.local:1883/alerts") == "mqtt://broker.local:1883"
    assert url_destination("/var/lib/openlfr/alerts.jsonl") == "/var/lib/openlfr/alerts.jsonl"
    assert url_destination("http://[::1") == f"http://{HIDDEN}"


def test_an_adhoc_sinks_name_keeps_no_path_and_stays_distinct() -> None:
    name = adhoc_name("webhook", HOOK)
    assert "pathtokenXYZ123" not in name and "querysecret" not in name and "pw" not in name
    assert name.startswith("webhook:https://hooks.example.org:8443#")
    assert adhoc_name("webhook", HOOK.replace("XYZ", "XYW")) != name  # another hook on the same host


def test_the_audited_sink_settings_keep_no_path() -> None:
    config = SinkSettings(type="webhook", url=HOOK, secret="signing-secret-1")
    described = repr(shown(config))
    assert "pathtokenXYZ123" not in described and "signing-secret-1" not in described
    assert "hooks.example.org" in described


def test_a_send_error_quoting_the_url_or_secret_shows_neither() -> None:
    error = f"Client error '404' for url '{HOOK}' (key signing-secret-1)"
    text = sink_error_text(error, HOOK, "signing-secret-1")
    assert "pathtokenXYZ123" not in text and "signing-secret-1" not in text and "querysecret" not in text
    assert "hooks.example.org" in text
