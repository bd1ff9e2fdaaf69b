"""A server trusted from a folder (trusted_dir) rather than pinned: its certificate in the
folder connects; a folder without it refuses the server, saying so."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from floorconsole.adapters.opcua import OpcUaEndpoint, OpcUaPoint, OpcUaSource
from floorconsole.core.links import LinkState
from floorconsole.core.quality import Quality
from tests.test_opcua_source import ROOT, Got, _certs, free_port


async def test_a_server_trusted_from_a_folder_and_one_not_in_it(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    await _certs(pki)
    (pki / "servers").mkdir()
    (pki / "servers" / "server.der").write_bytes((pki / "server.der").read_bytes())
    (pki / "nobody").mkdir()
    (pki / "nobody" / "stranger.der").write_bytes((pki / "stranger.der").read_bytes())
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.opcua_server", str(port), str(pki)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    tasks: list[asyncio.Task[None]] = []
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

        def source(folder: str, got: Got) -> OpcUaSource:
            ep = OpcUaEndpoint(
                "press2",
                f"opc.tcp://127.0.0.1:{port}/",
                security="Basic256Sha256-SignAndEncrypt",
                certificate=pki / "client.der",
                private_key=pki / "client.pem",
                trusted_dir=pki / folder,
                timeout_s=2.0,
            )
            return OpcUaSource(ep, [OpcUaPoint("press2.d", "ns=2;s=Plant.Double")], got)

        trusted, untrusted = Got(), Got()
        ours = source("servers", trusted)
        theirs = source("nobody", untrusted)
        tasks += [asyncio.create_task(ours.run()), asyncio.create_task(theirs.run())]
        await trusted.until(
            lambda: (s := trusted.latest("press2.d")) is not None and s.quality is Quality.GOOD,
            20,
            "a value from the trusted server",
        )
        await untrusted.until(lambda: theirs.last_error != "", 20, "the server refused")
        assert theirs.link.state is LinkState.DOWN
        assert "ertificate" in theirs.last_error, theirs.last_error
        s = untrusted.latest("press2.d")
        assert s is not None and s.quality is Quality.BAD
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        proc.kill()
        proc.wait()
