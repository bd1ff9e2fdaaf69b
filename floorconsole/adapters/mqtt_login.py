"""How a paho client logs in to a plant broker: credentials (the password from the environment)
and TLS files, the same for the MQTT sources and the uplink."""

from __future__ import annotations

import os

import paho.mqtt.client as mqtt

from floorconsole.core.config import BrokerConfig


def configure_client(client: mqtt.Client, broker: BrokerConfig, *, tls: bool = True) -> str:
    """Credentials and (with tls) TLS on a paho client, before its first connect.

    Returns "" or why this configuration cannot connect at all (a missing variable, an
    unreadable certificate), so the caller reports it instead of retrying forever. tls=False
    skips TLS on a client that already has it: paho refuses a second tls_set.
    """
    if broker.password_env:
        password = os.environ.get(broker.password_env)
        if password is None:
            return (
                f"environment variable {broker.password_env} is not set (password_env of "
                f"broker {broker.id!r}); not connecting"
            )
        client.username_pw_set(broker.username or "", password)
    elif broker.username:
        client.username_pw_set(broker.username)
    if broker.tls is not None and tls:
        files = {"ca": broker.tls.ca, "cert": broker.tls.cert, "key": broker.tls.key}
        for name, path in files.items():
            if path is not None and not path.is_file():
                return f"tls.{name} {path} is not a readable file"
        try:
            client.tls_set(
                ca_certs=str(broker.tls.ca) if broker.tls.ca else None,
                certfile=str(broker.tls.cert) if broker.tls.cert else None,
                keyfile=str(broker.tls.key) if broker.tls.key else None,
            )
        except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
            return f"TLS set-up failed: {e}"
    return ""
