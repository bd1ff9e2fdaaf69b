"""floorconsole beside its peer: Node-RED 5 with node-red-contrib-modbus, same devices, same
signals, same poll, both storing every sample to SQLite and both running one threshold rule.

20 simulated Modbus devices (pymodbus servers in another process, 75 holding registers each,
new values every 10 ms) polled every 100 ms; device 0 has one more register, a level that
crosses 500 every quarter second or so. Each peer stores every polled value to its own SQLite
file (WAL, synchronous=NORMAL, an index on (signal, t), transactions of at least 4 rows a
signal or 500 ms, rows sorted by signal: floorconsole's historian as it is; for Node-RED a
function node with Node's built-in node:sqlite) and writes coil co:10 of device 0 on when the level is above 500, off
when below. The devices' process times each reaction itself: from the read that first
returned the crossed level to the coil write arriving (both on that device's own thread).

The two run one after the other (each with fresh devices), the same length. Printed per peer:
stored samples/s and the ratio to those offered, CPU per stored sample, RSS, reaction p50 and
p99; then floorconsole / Node-RED ratios. Node-RED 5, Node.js 22 (the `node` package of the
npm registry, a binary for this machine) and node-red-contrib-modbus 5.23.3 (later ones have a
dependency outside the registry) are installed with npm into a cache folder on first use:
$FLOORCONSOLE_BENCH_CACHE or ~/.cache/floorconsole-bench. Without npm or the registry the
benchmark says so and skips.

    .venv/bin/python benchmarks/peer_nodered.py [--devices 20] [--poll-ms 100] [--seconds 30]

Ends with one line of JSON: cpu_per_sample_ratio, rss_ratio, reaction_p50_ratio,
reaction_p99_ratio, achieved_ratio_floorconsole, achieved_ratio_nodered, and the figures
behind them (or {"skipped": why}).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale import committed, proc_cpu_s, rss_mib  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIGNALS = 75
LEVEL = SIGNALS  # device 0's extra register: the level the rule watches
COIL = 10
THRESHOLD = 500
NODE = "node@22.23.3"
NODE_RED = "node-red@5.0.7"
MODBUS_NODES = "node-red-contrib-modbus@5.23.3"
WARMUP_S = 5.0
START_TIMEOUT_S = 90.0

SERVERS = r"""
import json, random, sys, threading, time
from floorconsole.adapters.modbus_server import ModbusDeviceServer
n_dev, n_sig, level_at, coil = (int(a) for a in sys.argv[1:5])
LOW, HIGH = 100, 900
state = {"expect": None, "read": None, "answered": True}
reactions = []  # seconds, read of the crossed level -> coil write
lock = threading.Lock()

class Device0(ModbusDeviceServer):
    def get(self, table, address, count=1):
        values = super().get(table, address, count)
        if table == "hr" and address <= level_at < address + count:
            with lock:
                if state["read"] is None and values[level_at - address] == state["expect"]:
                    state["read"] = time.perf_counter()
        return values

def on_write(table, address, values):
    now = time.perf_counter()
    if table != "co" or address != coil:
        return
    with lock:
        want = state["expect"] == HIGH
        if not state["answered"] and state["read"] is not None and bool(values[0]) == want:
            reactions.append(now - state["read"])
            state["answered"] = True

servers = [Device0(name="dev0", size=n_sig + 1, on_write=on_write)]
servers += [ModbusDeviceServer(name=f"dev{i}", size=n_sig) for i in range(1, n_dev)]
print(" ".join(str(s.start()) for s in servers), flush=True)
stop = threading.Event()

def commands():  # "reset": the measurement starts now; anything else: stop
    for line in sys.stdin:
        if line.strip() != "reset":
            break
        with lock:
            reactions.clear()
    stop.set()

threading.Thread(target=commands, daemon=True).start()
i, next_cross, level = 0, time.monotonic() + 2.0, LOW
while not stop.is_set():  # every register changes 100 times a second
    i += 1
    for s in servers:
        s.set("hr", 0, [(i + k) % 1000 for k in range(n_sig)])
    if time.monotonic() >= next_cross:
        level = HIGH if level == LOW else LOW
        with lock:  # expected first, then set: the read that returns it is timed
            state.update(expect=level, read=None, answered=False)
        servers[0].set("hr", level_at, level)
        next_cross = time.monotonic() + 0.2 + random.random() * 0.1
    time.sleep(0.01)
print(json.dumps(reactions), flush=True)
"""


def cache_dir() -> Path:
    base = os.environ.get("FLOORCONSOLE_BENCH_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "floorconsole-bench") / "nodered"


def install() -> tuple[Path, Path] | str:
    """(node binary, red.js) from the cache, installed with npm when missing; or why not."""
    cache = cache_dir()
    node = cache / "node_modules" / "node" / "bin" / "node"
    red = cache / "node_modules" / "node-red" / "red.js"
    modbus = cache / "node_modules" / "node-red-contrib-modbus" / "package.json"
    if node.exists() and red.exists() and modbus.exists():
        return node, red
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not installed: cannot install Node-RED"
    cache.mkdir(parents=True, exist_ok=True)
    print(f"installing {NODE}, {NODE_RED}, {MODBUS_NODES} into {cache} ...", flush=True)
    try:
        r = subprocess.run(
            [npm, "install", "--prefix", str(cache), "--no-audit", "--no-fund"]
            + ["--loglevel=error", NODE, NODE_RED, MODBUS_NODES],
            capture_output=True,
            text=True,
            timeout=900,
        )
    except subprocess.TimeoutExpired:
        return "npm install took over 15 minutes (is the npm registry reachable?)"
    if r.returncode != 0 or not (node.exists() and red.exists() and modbus.exists()):
        tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
        return f"npm install failed (is the npm registry reachable?): {' / '.join(tail)}"
    return node, red


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def floorconsole_plant(ports: list[int], poll_ms: int, data_dir: Path) -> str:
    out = [
        f'[edge]\nid = "peer"\nsite = "peer"\ndata_dir = "{data_dir}"\n',
        "[control]\nenabled = true\n",
    ]
    for d, port in enumerate(ports):
        out.append(
            f'[[devices]]\nid = "dev{d:02d}"\nprotocol = "modbus-tcp"\nhost = "127.0.0.1"\n'
            f'port = {port}\npoll = "{poll_ms}ms"\ntimeout = "500ms"\nretries = 0\n'
        )
        for k in range(SIGNALS + (1 if d == 0 else 0)):
            out.append(
                f'[[signals]]\nid = "dev{d:02d}.s{k:02d}"\ndevice = "dev{d:02d}"\n'
                f'address = "hr:{k}"\ntype = "uint16"\nrange = [0, 1000]\n'
            )
    out.append(
        f'[[rules]]\nid = "trip"\nsignal = "dev00.s{LEVEL:02d}"\nop = ">"\n'
        f"threshold = {THRESHOLD}\n"
        f'actions = [{{ write = "dev00", address = "co:{COIL}", on = true, off = false }}]\n'
    )
    return "\n".join(out)


STORE_JS = """
let st = context.get('st');
if (!st) {
  const { DatabaseSync } = global.get('sqlite');
  const db = new DatabaseSync(env.get('PEER_DB'));
  db.exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;" +
    "CREATE TABLE IF NOT EXISTS samples (signal INTEGER NOT NULL, t REAL NOT NULL, v REAL," +
    " q INTEGER NOT NULL); CREATE INDEX IF NOT EXISTS samples_signal_t ON samples (signal, t);");
  st = { db, ins: db.prepare('INSERT INTO samples (signal, t, v, q) VALUES (?, ?, ?, ?)'),
         buf: [], last: Date.now() };
  context.set('st', st);
}
const t = Date.now() / 1000, base = Number(msg.topic) * 1000, p = msg.payload;
for (let k = 0; k < p.length; k++) st.buf.push([base + k, t, p[k]]);
// Commit every 100 ms once there are 4 rows a signal, else after 500 ms at most (a commit
// rewrites one index page per signal it touches). floorconsole commits packed chunks every
// half poll (50 ms at 100 ms polls): these larger, rarer commits favour the peer.
const since = Date.now() - st.last;
if (since >= 500 || (since >= 100 && st.buf.length >= 4 * Number(env.get('PEER_SIGNALS')))) {
  const rows = st.buf;
  rows.sort((a, b) => a[0] - b[0]);  // stable: as floorconsole's historian does
  st.db.exec('BEGIN');
  for (const r of rows) st.ins.run(r[0], r[1], r[2], 192);
  st.db.exec('COMMIT');
  st.buf = [];
  st.last = Date.now();
}
return null;
"""

RULE_JS = f"""
const v = msg.payload[{LEVEL}];
const on = context.get('on') || false;
if (!on && v > {THRESHOLD}) {{ context.set('on', true); return {{ payload: true }}; }}
if (on && v < {THRESHOLD}) {{ context.set('on', false); return {{ payload: false }}; }}
return null;
"""


def nodered_flow(ports: list[int], poll_ms: int) -> list[dict[str, object]]:
    flow: list[dict[str, object]] = [{"id": "tab", "type": "tab", "label": "peer"}]
    flow.append(
        {
            "id": "store",
            "type": "function",
            "z": "tab",
            "func": STORE_JS,
            "outputs": 1,
            "wires": [[]],
            "x": 500,
            "y": 100,
        }  # fmt: skip
    )
    flow.append(
        {
            "id": "rule",
            "type": "function",
            "z": "tab",
            "func": RULE_JS,
            "outputs": 1,
            "wires": [["write"]],
            "x": 500,
            "y": 200,
        }  # fmt: skip
    )
    for d, port in enumerate(ports):
        flow.append(
            {
                "id": f"client{d}",
                "type": "modbus-client",
                "name": f"dev{d}",
                "clienttype": "tcp",
                "bufferCommands": True,
                "stateLogEnabled": False,
                "queueLogEnabled": False,
                "failureLogEnabled": False,
                "tcpHost": "127.0.0.1",
                "tcpPort": str(port),
                "tcpType": "DEFAULT",
                "unit_id": "1",
                "commandDelay": "1",
                "clientTimeout": "500",
                "reconnectOnTimeout": True,
                "reconnectTimeout": "2000",
                "parallelUnitIdsAllowed": True,
            }
        )
        flow.append(
            {
                "id": f"read{d}",
                "type": "modbus-read",
                "z": "tab",
                "name": f"dev{d}",
                "topic": str(d),
                "showStatusActivities": False,
                "logIOActivities": False,
                "showErrors": False,
                "unitid": "1",
                "dataType": "HoldingRegister",
                "adr": "0",
                "quantity": str(SIGNALS + (1 if d == 0 else 0)),
                "rate": str(poll_ms),
                "rateUnit": "ms",
                "delayOnStart": False,
                "startDelayTime": "",
                "server": f"client{d}",
                "useIOFile": False,
                "useIOForPayload": False,
                "emptyMsgOnFail": False,
                "wires": [["store", "rule"] if d == 0 else ["store"], []],
                "x": 200,
                "y": 100 + 40 * d,
            }
        )
    flow.append(
        {
            "id": "write",
            "type": "modbus-write",
            "z": "tab",
            "name": "trip",
            "showStatusActivities": False,
            "showErrors": False,
            "unitid": "1",
            "dataType": "Coil",
            "adr": str(COIL),
            "quantity": "1",
            "server": "client0",
            "wires": [[], []],
            "x": 800,
            "y": 200,
        }
    )
    return flow


SETTINGS_JS = """module.exports = {
  uiHost: "127.0.0.1",
  uiPort: %d,
  flowFile: "flows.json",
  credentialSecret: false,
  functionGlobalContext: { sqlite: require("node:sqlite") },
  logging: { console: { level: "warn", metrics: false, audit: false } },
  editorTheme: { tours: false },
};
"""


def start_servers(devices: int) -> tuple[subprocess.Popen[str], list[int]]:
    p = subprocess.Popen(
        [sys.executable, "-c", SERVERS, str(devices), str(SIGNALS), str(LEVEL), str(COIL)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert p.stdout is not None
    return p, [int(x) for x in p.stdout.readline().split()]


def reset_servers(p: subprocess.Popen[str]) -> None:
    """Reactions count from now: not those of the peer starting up."""
    assert p.stdin is not None
    p.stdin.write("reset\n")
    p.stdin.flush()


def stop_servers(p: subprocess.Popen[str]) -> list[float]:
    assert p.stdin is not None and p.stdout is not None
    p.stdin.write("stop\n")
    p.stdin.flush()
    line = p.stdout.readline()
    p.wait(10)
    return [float(x) for x in json.loads(line)] if line.strip() else []


def percentile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def run_peer(
    name: str, devices: int, poll_ms: int, seconds: float, tools: tuple[Path, Path] | None
) -> dict[str, float]:
    servers, ports = start_servers(devices)
    offered = (devices * SIGNALS + 1) * 1000.0 / poll_ms
    with tempfile.TemporaryDirectory(prefix=f"fc-peer-{name}-") as tmp:
        tmpd = Path(tmp)
        log = (tmpd / "peer.log").open("wb")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        if tools is None:
            data = tmpd / "var"
            db = data / "history.db"
            cfg = tmpd / "plant.toml"
            cfg.write_text(floorconsole_plant(ports, poll_ms, data))
            cmd = [sys.executable, "-m", "floorconsole.cli", "run", "--headless", "-c", str(cfg)]
        else:
            node, red = tools
            db = tmpd / "nodered.db"
            (tmpd / "flows.json").write_text(json.dumps(nodered_flow(ports, poll_ms)))
            (tmpd / "settings.js").write_text(SETTINGS_JS % free_port())
            (tmpd / "node_modules").symlink_to(cache_dir() / "node_modules")
            env["PEER_DB"] = str(db)
            env["PEER_SIGNALS"] = str(devices * SIGNALS + 1)
            cmd = [
                str(node),
                str(red),
                "--userDir",
                str(tmpd),
                "--settings",
                str(tmpd / "settings.js"),
            ]
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env
        )
        reactions: list[float] = []
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while committed(db)[0] == 0:  # running once it stores
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{name} did not start storing:\n" + (tmpd / "peer.log").read_text()[-3000:]
                    )
                time.sleep(0.5)
            time.sleep(WARMUP_S)
            reset_servers(servers)
            rows0, _ = committed(db)
            cpu0, t0 = proc_cpu_s(proc.pid), time.monotonic()
            time.sleep(seconds)
            rows1, _ = committed(db)
            wall = time.monotonic() - t0
            cpu1, rss = proc_cpu_s(proc.pid), rss_mib(proc.pid)
        finally:
            reactions = stop_servers(servers)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
    rate = (rows1 - rows0) / wall
    return {
        "samples_per_s": rate,
        "achieved_ratio": rate / offered,
        "cpu_us_per_sample": (cpu1 - cpu0) / max(rows1 - rows0, 1) * 1e6,
        "cpu_cores": (cpu1 - cpu0) / wall,
        "rss_mib": rss,
        "reaction_p50_ms": percentile(reactions, 0.5) * 1000,
        "reaction_p99_ms": percentile(reactions, 0.99) * 1000,
        "reactions": float(len(reactions)),
    }


def show(name: str, r: dict[str, float]) -> None:
    print(
        f"{name:12s} {r['samples_per_s']:8,.0f} samples/s stored (ratio {r['achieved_ratio']:.3f}), "
        f"{r['cpu_us_per_sample']:.1f} us CPU a sample ({r['cpu_cores']:.2f} cores), "
        f"RSS {r['rss_mib']:.0f} MiB, reaction p50 {r['reaction_p50_ms']:.1f} ms "
        f"p99 {r['reaction_p99_ms']:.1f} ms ({int(r['reactions'])} crossings)",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=20)
    ap.add_argument("--poll-ms", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args(argv)
    tools = install()
    if isinstance(tools, str):
        print(f"peer_nodered: skipped: {tools}")
        print(json.dumps({"skipped": tools}))
        return 0
    print(
        f"{args.devices} devices x {SIGNALS} registers every {args.poll_ms} ms, "
        f"{args.seconds:g} s each, both storing every sample to SQLite",
        flush=True,
    )
    ours = run_peer("floorconsole", args.devices, args.poll_ms, args.seconds, None)
    show("floorconsole", ours)
    peer = run_peer("node-red", args.devices, args.poll_ms, args.seconds, tools)
    show("Node-RED", peer)
    result = {
        "cpu_per_sample_ratio": round(ours["cpu_us_per_sample"] / peer["cpu_us_per_sample"], 3),
        "rss_ratio": round(ours["rss_mib"] / peer["rss_mib"], 3),
        "reaction_p50_ratio": round(ours["reaction_p50_ms"] / peer["reaction_p50_ms"], 3),
        "reaction_p99_ratio": round(ours["reaction_p99_ms"] / peer["reaction_p99_ms"], 3),
        "achieved_ratio_floorconsole": round(ours["achieved_ratio"], 3),
        "achieved_ratio_nodered": round(peer["achieved_ratio"], 3),
        "floorconsole": {k: round(v, 3) for k, v in ours.items()},
        "nodered": {k: round(v, 3) for k, v in peer.items()},
        "devices": args.devices,
        "poll_ms": args.poll_ms,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
