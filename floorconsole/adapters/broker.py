"""Local MQTT brokers on loopback: a mosquitto process for tests and the demo, amqtt as fallback."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

LOOPBACK = "127.0.0.1"
MOSQUITTO_HINT = "apt-get install -y mosquitto"

# A raw MQTT 3.1.1 CONNECT (clean session, keepalive 60 s, empty client id). Any CONNACK,
# even "not authorised" from a broker with a password file, means "speaks MQTT", which is
# more than "the port is open".
_CONNECT = bytes([0x10, 12, 0, 4]) + b"MQTT" + bytes([4, 0x02, 0, 60, 0, 0])
_CONNACK = bytes([0x20, 0x02])
_DISCONNECT = bytes([0xE0, 0x00])


class BrokerError(RuntimeError):
    """A broker that would not start or stop; the message carries the tail of its log."""


class _PortTaken(BrokerError):
    """The chosen port was taken first: worth another try on another free port."""


class LocalBroker(Protocol):
    """What callers of start_demo_broker get: where it listens, and how to stop it."""

    host: str
    port: int

    def stop(self) -> None: ...


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary: PATH first, then Debian's /usr/sbin (not on a user's PATH)."""
    found = shutil.which("mosquitto")
    if found:
        return found
    debian = Path("/usr/sbin/mosquitto")
    return str(debian) if debian.is_file() and os.access(debian, os.X_OK) else None


def free_port(host: str = LOOPBACK) -> int:
    """A port nobody listens on right now (the OS picks it; a race stays possible, callers retry)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    """True when nothing listens on host:port (bound the way a broker binds, SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def mqtt_ready(
    host: str, port: int, timeout: float = 0.5, tls: ssl.SSLContext | None = None
) -> bool:
    """True when host:port answers an MQTT CONNECT with a CONNACK (accepting or not)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            s = tls.wrap_socket(raw, server_hostname=host) if tls is not None else raw
            s.sendall(_CONNECT)
            reply = b""
            while len(reply) < 4:
                chunk = s.recv(4 - len(reply))
                if not chunk:
                    return False
                reply += chunk
            if reply[2:] == b"\x00\x00":
                s.sendall(_DISCONNECT)
            return reply[:2] == _CONNACK
    except OSError:
        return False


@dataclass(frozen=True, slots=True)
class ListenerTLS:
    """PEM files for a TLS listener; with require_certificate, clients need a cert from ca."""

    ca: Path
    cert: Path
    key: Path
    require_certificate: bool = False
    client_cert: Path | None = None  # used by the readiness probe when certificates are required
    client_key: Path | None = None

    def probe_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        if self.client_cert is not None:
            ctx.load_cert_chain(
                str(self.client_cert), str(self.client_key) if self.client_key else None
            )
        return ctx


class MosquittoBroker:
    """A mosquitto process on loopback, with its own config file in a temp folder.

    Anonymous, no persistence, unbounded per-client queue (`max_queued_messages 0`: the default
    1000 silently drops QoS 1 messages to a slow subscriber), log to stderr (captured in the
    temp folder; as root mosquitto drops to its own user and could not write a log file there).
    start() again after stop() reuses the port, so a test can take the broker away and back.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = LOOPBACK,
        executable: str | None = None,
        start_timeout: float = 10.0,
        users: dict[str, str] | None = None,
        tls: ListenerTLS | None = None,
        extra: str = "",
    ) -> None:
        exe = executable or find_mosquitto()
        if exe is None:
            raise BrokerError(f"mosquitto not found: {MOSQUITTO_HINT}")
        self.executable = exe
        self.host = host
        self.port = port or 0
        self._port_given = port is not None
        self.start_timeout = start_timeout
        self.port_wait = 15.0  # how long a restart waits for its port (see start)
        self._started_once = False
        self._hold: socket.socket | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="floorconsole-mosquitto-"))
        self.config_path = self._dir / "mosquitto.conf"
        self.log_path = self._dir / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self.users = dict(users or {})
        self.tls = tls
        self.password_path = self._dir / "passwords"
        self.extra = extra  # more configuration lines (a bridge, say), appended as given

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> MosquittoBroker:
        """Start and wait until it accepts MQTT connections. Idempotent while running."""
        if self.running:
            return self
        try:
            return self._start()
        except BaseException:
            if not self._started_once:  # nothing to come back to: leave no folder behind
                shutil.rmtree(self._dir, ignore_errors=True)
            raise

    def _start(self) -> MosquittoBroker:
        # A free port can be taken between choosing and binding: choose again, unless it was given.
        # A port we keep (given, or ours before a stop) can be held for a moment by someone
        # else's socket: a client reconnecting to it meanwhile can even be connected to itself
        # (TCP simultaneous open, when the kernel picks the listening port as its source port).
        # Such holds end within seconds: wait for the port rather than fail the restart.
        if self._port_given or self.port:
            # A port given for the first start is the user's: say at once that it is taken.
            deadline = time.monotonic() + (self.port_wait if self._started_once else 0.0)
            while True:
                try:
                    self._spawn()
                    self._started_once = True
                    return self
                except _PortTaken:
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(0.2)
        for attempt in range(3):
            self.port = free_port(self.host)
            try:
                self._spawn()
                self._started_once = True
                return self
            except _PortTaken:
                if attempt == 2:
                    raise
        return self

    def _write_passwords(self) -> None:
        tool = shutil.which("mosquitto_passwd") or str(
            Path(self.executable).parent.parent / "bin" / "mosquitto_passwd"
        )
        self.password_path.write_text("", encoding="utf-8")
        for user, password in self.users.items():
            done = subprocess.run(
                [tool, "-b", str(self.password_path), user, password],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise BrokerError(f"mosquitto_passwd failed for {user!r}: {done.stderr.strip()}")
        # Read after mosquitto drops to its own user when started as root.
        self._readable_by_mosquitto(self.password_path)

    def _readable_by_mosquitto(self, *files: Path) -> None:
        # Started as root, mosquitto reads some files after dropping to its own user.
        self._dir.chmod(0o755)
        for f in files:
            f.chmod(0o644)

    def _tls_copies(self) -> ListenerTLS:
        """The listener's PEM files copied into our folder: mosquitto reads them after dropping
        root, so they must be readable by its user (fine for test and demo certificates)."""
        assert self.tls is not None
        copies = []
        for name, src in (
            ("ca.pem", self.tls.ca),
            ("server.pem", self.tls.cert),
            ("server.key", self.tls.key),
        ):
            dst = self._dir / name
            shutil.copyfile(src, dst)
            copies.append(dst)
        self._readable_by_mosquitto(*copies)
        ca, cert, key = copies
        return ListenerTLS(ca, cert, key, require_certificate=self.tls.require_certificate)

    def _spawn(self) -> None:
        self._release_port()
        self._dir.mkdir(mode=0o700, exist_ok=True)
        # Otherwise the readiness probe could be answered by whoever already holds the port.
        if not port_is_free(self.host, self.port):
            raise _PortTaken(
                f"cannot start mosquitto on {self.host}:{self.port}: the port is in use"
            )
        if self.users:
            self._write_passwords()
            auth = f"allow_anonymous false\npassword_file {self.password_path}\n"
        else:
            auth = "allow_anonymous true\n"
        listener = f"listener {self.port} {self.host}\n"
        if self.tls is not None:
            t = self._tls_copies()
            listener += (
                f"cafile {t.ca}\ncertfile {t.cert}\nkeyfile {t.key}\n"
                f"require_certificate {'true' if t.require_certificate else 'false'}\n"
            )
        self.config_path.write_text(
            listener + auth + "persistence false\n"
            "max_queued_messages 0\n"
            "max_inflight_messages 100\n"
            "log_dest stderr\n"
            "log_type error\n"
            "log_type warning\n"
            "log_type notice\n" + (self.extra and "\n" + self.extra),
            encoding="utf-8",
        )
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            self._proc = subprocess.Popen(
                [self.executable, "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            log.close()
        probe = self.tls.probe_context() if self.tls is not None else None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._proc = None
                tail = self.log_tail()
                error = _PortTaken if "Address already in use" in tail else BrokerError
                raise error(f"mosquitto on {self.host}:{self.port} exited at start-up: {tail}")
            if mqtt_ready(self.host, self.port, tls=probe):
                return
            time.sleep(0.02)
        self.stop()
        raise BrokerError(
            f"mosquitto on {self.host}:{self.port} did not accept connections within "
            f"{self.start_timeout:g} s: {self.log_tail()}"
        )

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM by PID, then SIGKILL if it lingers. The port stays ours for start()."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
        self._hold_port()

    def kill(self) -> None:
        """SIGKILL: the broker vanishes without a DISCONNECT, like a power cut."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5.0)
        self._hold_port()

    def _hold_port(self) -> None:
        """Keep the port ours while the broker is down: a socket bound to it (not listening, so
        clients are still refused, as by a broker that is gone) keeps the kernel from handing
        the port to an outgoing connection as its source port, which would block the restart
        for as long as that connection lives."""
        self._release_port()
        hold = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            hold.bind((self.host, self.port))
        except OSError:
            hold.close()  # taken already: start() waits for it
            return
        self._hold = hold

    def _release_port(self) -> None:
        hold, self._hold = self._hold, None
        if hold is not None:
            hold.close()

    def restart(self) -> MosquittoBroker:
        """Stop, then start on the same port; clients see a disconnect and must reconnect."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop and remove the temp folder."""
        self.stop()
        self._release_port()
        shutil.rmtree(self._dir, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        tail = text.strip().splitlines()[-lines:]
        return " | ".join(tail) if tail else "(log empty)"

    def __enter__(self) -> MosquittoBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"MosquittoBroker({self.host}:{self.port}, {state})"


class AmqttBroker:
    """An in-process amqtt broker on loopback, in a thread with its own event loop.

    For the demo on a machine without mosquitto: pure Python, slower, good enough for a
    simulated plant. Tests use mosquitto, which is what plants run.
    """

    def __init__(
        self, port: int | None = None, *, host: str = LOOPBACK, start_timeout: float = 10.0
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.start_timeout = start_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Any = None
        self._stopped: asyncio.Event | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> AmqttBroker:
        if self.running:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._run, args=(ready, failure), name=f"amqtt-{self.port}", daemon=True
        )
        self._thread.start()
        if not ready.wait(self.start_timeout):
            raise BrokerError(
                f"amqtt on {self.host}:{self.port} did not start within {self.start_timeout:g} s"
            )
        if failure:
            self._thread.join(timeout=1.0)
            self._thread = None
            raise BrokerError(f"amqtt on {self.host}:{self.port} failed to start: {failure[0]}")
        return self

    def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(ready, failure))
        finally:
            loop.close()
            ready.set()

    async def _serve(self, ready: threading.Event, failure: list[BaseException]) -> None:
        from amqtt.broker import Broker  # amqtt is heavy; import it only when it is the fallback

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
        try:
            self._broker = Broker(config)
            await self._broker.start()
        except Exception as e:  # noqa: BLE001 - reported to start() as a BrokerError
            failure.append(e)
            ready.set()
            return
        self._stopped = asyncio.Event()
        ready.set()
        await self._stopped.wait()
        await self._broker.shutdown()

    def stop(self, timeout: float = 10.0) -> None:
        thread, loop, stopped = self._thread, self._loop, self._stopped
        self._thread = None
        if thread is None or loop is None or stopped is None or not thread.is_alive():
            return
        loop.call_soon_threadsafe(stopped.set)
        thread.join(timeout=timeout)

    def __enter__(self) -> AmqttBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"AmqttBroker({self.host}:{self.port}, {'running' if self.running else 'stopped'})"


class _DemoMosquitto:
    """A MosquittoBroker whose stop() also removes its temp folder (the demo starts it once)."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self._broker = broker
        self.host = broker.host
        self.port = broker.port

    def stop(self) -> None:
        self._broker.close()

    def __repr__(self) -> str:
        return repr(self._broker)


def start_demo_broker(port: int | None = None, *, prefer_mosquitto: bool = True) -> LocalBroker:
    """A running broker on loopback for `floorconsole demo`: mosquitto when installed, else amqtt."""
    if prefer_mosquitto and find_mosquitto() is not None:
        return _DemoMosquitto(MosquittoBroker(port).start())
    return AmqttBroker(port).start()
