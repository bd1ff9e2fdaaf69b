"""`floorconsole opcua browse ENDPOINT [NODE]`: an OPC UA server's address space as a tree
(NodeIds, types, current values), and the plant-file lines for the nodes an engineer picks."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from floorconsole.core.opcua import SECURITY_MODES, plant_lines, tree_lines, variables


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    o = subparsers.add_parser(
        "opcua",
        help="OPC UA servers: browse the address space for signals to add",
        description="Look into an OPC UA server before adding it to the plant file.",
    )
    osub = o.add_subparsers(metavar="ACTION")
    b = osub.add_parser(
        "browse",
        help="the address space as a tree, and plant-file lines for chosen nodes",
        description="Browse an OPC UA server: each node with its NodeId, and each variable "
        "with its type and current value. --pick NODE (repeatable) prints the [[signals]] "
        "lines to paste into the plant file; with NODE and no --pick, the lines for every "
        "variable under NODE.",
    )
    b.add_argument("endpoint", metavar="ENDPOINT", help="opc.tcp://host:4840/path")
    b.add_argument("node", nargs="?", metavar="NODE", help="start here (a NodeId); default Objects")
    b.add_argument("--depth", type=int, default=4, help="levels below NODE (default 4)")
    b.add_argument("--pick", action="append", default=[], metavar="NODE", help="a variable to add")
    b.add_argument("--device", default="opcua1", help="the device id the lines name")
    b.add_argument("--sampling", default="100ms", help="sampling_interval in the lines")
    b.add_argument("--security", choices=SECURITY_MODES, default="None")
    b.add_argument("--certificate", type=Path, help="our certificate (Sign, SignAndEncrypt)")
    b.add_argument("--private-key", type=Path, help="our private key")
    b.add_argument("--server-certificate", type=Path, help="the server's certificate, pinned")
    b.add_argument("--username")
    b.add_argument("--password-env", metavar="VAR", help="the variable holding the password")
    b.add_argument("--timeout", type=float, default=4.0, help="seconds (default 4)")
    b.set_defaults(func=cmd_browse)
    o.set_defaults(func=lambda args: o.print_help() or 2)
    return o


def cmd_browse(args: argparse.Namespace) -> int:
    from floorconsole.adapters.opcua import OpcUaEndpoint, OpcUaError, browse
    from floorconsole.core.opcua import BrowsedNode, parse_node_id

    for n in [args.node, *args.pick]:
        if n is None:
            continue
        try:
            parse_node_id(n)
        except ValueError as e:
            print(f"floorconsole: {e}", file=sys.stderr)
            return 2
    endpoint = OpcUaEndpoint(
        id=args.device,
        endpoint=args.endpoint,
        security=args.security,
        certificate=args.certificate,
        private_key=args.private_key,
        server_certificate=args.server_certificate,
        username=args.username,
        password_env=args.password_env,
        timeout_s=args.timeout,
    )

    async def run() -> tuple[BrowsedNode, list[BrowsedNode]]:
        tree = await browse(endpoint, args.node, depth=args.depth)
        picked = []
        for n in args.pick:
            picked.append(await browse(endpoint, n, depth=0))
        return tree, picked

    import logging

    logging.getLogger("asyncua").setLevel(logging.ERROR)  # its session-timeout notes
    try:
        tree, picked = asyncio.run(run())
    except OpcUaError as e:
        print(f"floorconsole: {args.endpoint}: {e}", file=sys.stderr)
        return 1
    if not picked or args.node:
        for line in tree_lines(tree):
            print(line)
    chosen = picked or (variables(tree)[:50] if args.node else [])
    not_vars = [n for n in picked if n.node_class != "Variable"]
    for n in not_vars:
        print(
            f"floorconsole: {n.node_id} is a {n.node_class}, not a variable: no value to read",
            file=sys.stderr,
        )
    lines = plant_lines(args.device, chosen, args.sampling)
    if lines:
        print()
        print("# plant-file lines; the device, if the file has not got it yet:")
        print(device_lines(endpoint))
        print(lines, end="")
    return 1 if not_vars else 0


def device_lines(ep: Any) -> str:
    """The [[devices]] table for the endpoint browsed, as it was reached."""
    out = [
        "[[devices]]",
        f'id = "{ep.id}"',
        'protocol = "opc-ua"',
        f'endpoint = "{ep.endpoint}"',
    ]
    if ep.security != "None":
        out.append(f'security = "{ep.security}"')
        for key, value in (
            ("certificate", ep.certificate),
            ("private_key", ep.private_key),
            ("server_certificate", ep.server_certificate),
        ):
            if value is not None:
                out.append(f'{key} = "{value}"')
    if ep.username:
        out += [f'username = "{ep.username}"', f'password_env = "{ep.password_env or ""}"']
    return "\n".join(out) + "\n"
