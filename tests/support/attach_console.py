"""A console in a process of its own, attached over the engine's socket: logs in, takes
control when its role allows, prints {"session": TOKEN} and keeps pulling frames until killed.

    python -m tests.support.attach_console SOCKET USER PIN
"""

from __future__ import annotations

import json
import sys
import time

from floorconsole.engine.remote import RemoteAPI


def main(socket: str, user: str, pin: str) -> None:
    api = RemoteAPI(socket, refresh_hz=4.0).connect(timeout=10.0)
    r = api.login(user, pin)
    assert r["ok"], r
    took = api.command("control.take", session=r["session"])
    print(json.dumps({"session": r["session"], "control": took}), flush=True)
    while True:
        api.frame()
        time.sleep(0.25)


if __name__ == "__main__":
    main(*sys.argv[1:4])
