"""`python -m tests.support.opcua_server PORT [PKI]`: an asyncua server in a process of its own, for
the OPC UA tests. A variable of every built-in scalar type and a Double array under
ns=2;s=Plant.<Name>, and a read-only one; prints "ready" when it listens. Commands on stdin,
one JSON object a line:

    {"set": "Double", "value": 1.5, "status": "UncertainLastUsableValue", "source_ts": EPOCH}
    {"burst": "Double", "count": 50}        # 50 changes as fast as it can (queue overflow)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys

from asyncua import Server, ua

V = ua.VariantType
SCALARS: dict[str, tuple[ua.VariantType, object]] = {
    "Boolean": (V.Boolean, True),
    "SByte": (V.SByte, -5),
    "Byte": (V.Byte, 200),
    "Int16": (V.Int16, -1234),
    "UInt16": (V.UInt16, 60000),
    "Int32": (V.Int32, -123456),
    "UInt32": (V.UInt32, 4000000000),
    "Int64": (V.Int64, -9000000000),
    "UInt64": (V.UInt64, 18000000000000000000),
    "Float": (V.Float, 1.5),
    "Double": (V.Double, 2.25),
    "String": (V.String, "running"),
    "DateTime": (V.DateTime, dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)),
    "ByteString": (V.ByteString, b"\x01\x02"),
}


async def main(port: int, pki: str | None) -> None:
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/")
    if pki is None:
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    else:
        # SignAndEncrypt only, and only clients whose certificate is in PKI/trusted
        from pathlib import Path

        from asyncua.crypto.truststore import TrustStore
        from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions

        server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
        # the URI its certificate carries: a client that validates the server checks it
        await server.set_application_uri("urn:floorconsole:test-server")
        await server.load_certificate(f"{pki}/server.der")
        await server.load_private_key(f"{pki}/server.pem")
        store = TrustStore([Path(pki) / "trusted"], [])
        await store.load()
        server.set_certificate_validator(
            CertificateValidator(
                CertificateValidatorOptions.TRUSTED_VALIDATION
                | CertificateValidatorOptions.PEER_CLIENT,
                store,
            )
        )
    idx = await server.register_namespace("urn:floorconsole:test")
    assert idx == 2, idx
    plant = await server.nodes.objects.add_object(ua.NodeId("Plant", idx), "Plant")
    nodes = {}
    for name, (vtype, value) in SCALARS.items():
        var = await plant.add_variable(
            ua.NodeId(f"Plant.{name}", idx), name, value, varianttype=vtype
        )
        await var.set_writable()
        nodes[name] = (var, vtype)
    arr = await plant.add_variable(
        ua.NodeId("Plant.Waveform", idx), "Waveform", [0.0, 1.0, 0.0, -1.0], varianttype=V.Double
    )
    nodes["Waveform"] = (arr, V.Double)
    ro = await plant.add_variable(
        ua.NodeId("Plant.ReadOnly", idx), "ReadOnly", 7.0, varianttype=V.Double
    )
    nodes["ReadOnly"] = (ro, V.Double)

    async with server:
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            cmd = json.loads(line)
            if "set" in cmd:
                var, vtype = nodes[cmd["set"]]
                status = ua.StatusCode(getattr(ua.StatusCodes, cmd.get("status", "Good")))
                ts = cmd.get("source_ts")
                source = dt.datetime.fromtimestamp(ts, dt.UTC) if ts is not None else None
                await var.write_value(
                    ua.DataValue(
                        ua.Variant(cmd["value"], vtype), StatusCode=status, SourceTimestamp=source
                    )
                )
            elif "burst" in cmd:
                var, vtype = nodes[cmd["burst"]]
                for i in range(int(cmd["count"])):
                    await var.write_value(ua.DataValue(ua.Variant(float(i), vtype)))
                    await asyncio.sleep(0.001)
            print("ok", flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None))
