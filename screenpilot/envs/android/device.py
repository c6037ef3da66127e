"""A thin adapter over adbutils: one device, argument lists in, bytes or value objects out.

Every call has a socket timeout. Transient failures (server unreachable, device gone or offline, a read
that timed out) are retried with exponential backoff, a bounded number of times, then raised as
:class:`~screenpilot.errors.DeviceError` naming the serial and the command. A command that may have reached
the device already (the shell accepted it) is retried only when it is idempotent, so a tap is never doubled.

Shell commands go over one connection (``host:transport:<serial>`` then ``shell:``) and are read into a
growing buffer; adbutils' own ``shell()`` opens a second connection for the server version and reads in
4 KiB pieces by concatenation, which is quadratic for a 10 MB raw screenshot.
"""

from __future__ import annotations

import functools
import os
import shlex
import socket
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from screenpilot.envs.base import ShellResult
from screenpilot.errors import DeviceError, MissingExtraError, SetupError

if TYPE_CHECKING:
    import adbutils

#: Marks the exit status appended to a command's output (``(\ncmd\n)\necho MARK$?``).
EXIT_MARK = "__screenpilot_exit__:"

Command = str | Sequence[str]


def command_line(command: Command) -> str:
    """The shell line for an argument list (each argument quoted for the device's ``sh``), or a line as is."""
    return command if isinstance(command, str) else shlex.join(command)


def _adbutils() -> Any:
    server_address()  # adbutils reads ANDROID_ADB_SERVER_PORT when imported and fails on a bad one
    try:
        import adbutils
    except ImportError as exc:
        raise MissingExtraError("android", "adbutils", "The Android environment") from exc
    return adbutils


class ServerUnreachableError(ConnectionError):
    """No ADB server answers at the address. screenpilot never starts one (``adb start-server``) itself."""

    def __init__(self, host: str, port: int, reason: object) -> None:
        super().__init__(f"cannot reach the ADB server at {host}:{port} ({reason})")
        self.host = host
        self.port = port


def connect_to_server(host: str, port: int, timeout_s: float | None) -> socket.socket:
    """A TCP connection to the ADB server, or ServerUnreachableError; never spawns a server."""
    try:
        return socket.create_connection((host, port), timeout=timeout_s or 10.0)
    except OSError as exc:
        raise ServerUnreachableError(host, port, exc.strerror or str(exc) or type(exc).__name__) from exc


@functools.cache
def _client_class() -> Any:
    """adbutils' client over connections screenpilot opens itself.

    adbutils' own connection runs ``adb start-server`` (on the default port, whatever port was asked) when
    a connect fails, leaving a daemon behind; a server that is not there is reported instead.
    """
    adb = _adbutils()
    base_connection: Any = adb.AdbConnection
    base_client: Any = adb.AdbClient

    class Connection(base_connection):
        def __init__(self, host: str, port: int, timeout_s: float | None) -> None:
            self._address = (host, port)
            self._connect_timeout_s = timeout_s
            super().__init__(host, port)

        def _safe_connect(self) -> socket.socket:
            return connect_to_server(*self._address, self._connect_timeout_s)

    class Client(base_client):
        def __init__(self, host: str, port: int, socket_timeout: float | None = None) -> None:
            super().__init__(host=host, port=port, socket_timeout=socket_timeout)
            self._timeout_s = socket_timeout

        def make_connection(self, timeout: float | None = None) -> Any:
            timeout = timeout or self._timeout_s
            return Connection(self.host, self.port, timeout)

    return Client


def make_client(host: str, port: int, timeout_s: float | None) -> adbutils.AdbClient:
    """An adbutils client for the server at ``host:port`` that never starts a server itself."""
    client: adbutils.AdbClient = _client_class()(host, port, timeout_s)
    return client


@dataclass(frozen=True)
class DeviceListing:
    """One line of ``adb devices -l``."""

    serial: str
    state: str
    model: str | None = None

    def __str__(self) -> str:
        model = f" ({self.model})" if self.model else ""
        return f"{self.serial} [{self.state}]{model}"


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a transient failure is retried."""

    attempts: int = 3
    first_wait_s: float = 0.25
    max_wait_s: float = 2.0


DEFAULT_RETRY = RetryPolicy()


class _Transient(Exception):
    """A failure worth retrying; carries the reason for the final DeviceError."""

    def __init__(self, reason: str, *, accepted: bool) -> None:
        super().__init__(reason)
        self.accepted = accepted


def server_address(host: str | None = None, port: int | None = None) -> tuple[str, int]:
    """The ADB server address: explicit values, else ``ANDROID_ADB_SERVER_HOST``/``_PORT``, else 127.0.0.1:5037."""
    host = host or os.environ.get("ANDROID_ADB_SERVER_HOST") or "127.0.0.1"
    if port is None:
        text = os.environ.get("ANDROID_ADB_SERVER_PORT") or "5037"
        port = int(text) if text.strip().isdigit() else -1
        if not 0 < port < 65536:
            raise SetupError(f"ANDROID_ADB_SERVER_PORT must be a port number (1-65535), got {text!r}")
    elif not 0 < port < 65536:
        raise SetupError(f"the ADB server port must be 1-65535, got {port}")
    return host, port


_START_SERVER = (
    "start it with `adb start-server`, or point ANDROID_ADB_SERVER_HOST and ANDROID_ADB_SERVER_PORT at yours"
)


def list_devices(
    host: str | None = None, port: int | None = None, *, timeout_s: float = 10.0
) -> list[DeviceListing]:
    """Devices the ADB server knows, in every state. SetupError when the server cannot be reached."""
    adb = _adbutils()
    host, port = server_address(host, port)
    client = make_client(host, port, timeout_s)
    try:
        infos = client.list(extended=True)
    except ServerUnreachableError as exc:
        raise SetupError(f"{exc}; {_START_SERVER}") from exc
    except (adb.AdbError, OSError) as exc:
        raise SetupError(f"cannot reach the ADB server at {host}:{port} ({exc}); {_START_SERVER}") from exc
    return [DeviceListing(i.serial, i.state, i.tags.get("model")) for i in infos]


#: What to do about a device the ADB server lists in a state other than ``device``.
_STATE_HINTS = {
    "unauthorized": "; accept the USB debugging prompt on the phone",
    "offline": "; reconnect it (or `adb reconnect offline`) and wait until `adb devices` lists it as device",
    "authorizing": "; wait a moment: the phone is checking this computer's key",
    "connecting": "; wait a moment: the ADB server is still connecting to it",
    "recovery": "; it is in recovery mode: reboot it into Android",
    "sideload": "; it is in sideload mode: reboot it into Android",
    "bootloader": "; it is in the bootloader: reboot it into Android",
    "no permissions": "; the ADB server may not open its USB device (check the udev rules)",
}


def _failure_text(exc: BaseException) -> str:
    """The ADB server's refusal on one line, with what to do for a device in the wrong state.

    adb explains an unauthorized device over four lines ("device unauthorized.\\nThis adb server's ...").
    """
    lines = str(exc).strip().splitlines()
    if not lines:
        return type(exc).__name__
    first = lines[0].rstrip(".")
    state = first.removeprefix("device ").removeprefix("still ")
    return first + _STATE_HINTS.get(state, "") if first.startswith("device ") else first


def choose_serial(listings: Sequence[DeviceListing], serial: str | None = None) -> str:
    """Pick the device: ``serial``, else ``ANDROID_SERIAL``, else the only ready one; SetupError otherwise."""
    serial = serial or os.environ.get("ANDROID_SERIAL") or None
    shown = ", ".join(map(str, listings)) or "none"
    if serial is not None:
        match = next((d for d in listings if d.serial == serial), None)
        if match is None:
            raise SetupError(f"Android device {serial!r} is not connected; connected devices: {shown}")
        if match.state != "device":
            raise SetupError(f"Android device {serial!r} is {match.state}{_STATE_HINTS.get(match.state, '')}")
        return serial
    ready = [d for d in listings if d.state == "device"]
    if not ready:
        hints = "".join(dict.fromkeys(_STATE_HINTS.get(d.state, "") for d in listings))
        raise SetupError(
            f"no Android device is ready (adb devices: {shown})"
            + (hints or "; connect one or start an emulator")
        )
    if len(ready) > 1:
        raise SetupError(
            f"{len(ready)} Android devices are connected ({shown}); choose one with --serial or ANDROID_SERIAL"
        )
    return ready[0].serial


class AndroidDevice:
    """One device behind an ADB server."""

    def __init__(
        self,
        serial: str,
        *,
        host: str | None = None,
        port: int | None = None,
        timeout_s: float = 20.0,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        adb = _adbutils()
        self.serial = serial
        self.host, self.port = server_address(host, port)
        self.timeout_s = timeout_s
        self.retry = retry
        self._adb = adb
        self._client = make_client(self.host, self.port, timeout_s)
        self._device: adbutils.AdbDevice = adb.AdbDevice(self._client, serial=serial)

    @classmethod
    def connect(
        cls,
        serial: str | None = None,
        *,
        host: str | None = None,
        port: int | None = None,
        timeout_s: float = 20.0,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> AndroidDevice:
        """Select a device as ``adb`` would (see :func:`choose_serial`) and return its adapter."""
        chosen = choose_serial(list_devices(host, port, timeout_s=min(timeout_s, 10.0)), serial)
        return cls(chosen, host=host, port=port, timeout_s=timeout_s, retry=retry)

    def __repr__(self) -> str:
        return f"AndroidDevice({self.serial!r} via {self.host}:{self.port})"

    # -- retries ---------------------------------------------------------------------------------------------
    def _retrying(self, what: str, idempotent: bool, call: Any) -> Any:
        def retry_it(exc: BaseException) -> bool:
            return isinstance(exc, _Transient) and (idempotent or not exc.accepted)

        retrying = Retrying(
            stop=stop_after_attempt(max(1, self.retry.attempts)),
            wait=wait_exponential(multiplier=self.retry.first_wait_s, max=self.retry.max_wait_s),
            retry=retry_if_exception(retry_it),
            reraise=True,
        )
        tries = [0]

        def counted() -> Any:
            tries[0] += 1
            return call()

        try:
            return retrying(counted)
        except _Transient as exc:
            after = f" ({tries[0]} tries)" if tries[0] > 1 else ""
            raise DeviceError(
                f"the Android device failed{after}: {exc}", device=self.serial, command=what
            ) from exc

    # -- shell -----------------------------------------------------------------------------------------------
    def _open(self, service: str, timeout_s: float) -> socket.socket:
        """A connection switched to this device with ``service`` accepted, or _Transient."""
        adb = self._adb
        try:
            connection = self._client.make_connection(timeout=timeout_s)
        except ServerUnreachableError as exc:
            raise _Transient(str(exc), accepted=False) from exc
        sock: socket.socket = connection.conn
        try:
            connection.send_command(f"host:transport:{self.serial}")
            connection.check_okay()
            connection.send_command(service)
            connection.check_okay()
        except (adb.AdbError, OSError) as exc:
            sock.close()
            raise _Transient(_failure_text(exc), accepted=False) from exc
        return sock

    def _read_all(self, sock: socket.socket) -> bytes:
        buffer = bytearray()
        chunk = memoryview(bytearray(1 << 20))
        try:
            while True:
                n = sock.recv_into(chunk)
                if n == 0:
                    return bytes(buffer)
                buffer += chunk[:n]
        except TimeoutError as exc:
            waited = sock.gettimeout()
            raise _Transient(
                f"timed out: no output in {waited:g} s" if waited else "timed out waiting for the output",
                accepted=True,
            ) from exc
        except OSError as exc:
            raise _Transient(f"connection lost: {exc}", accepted=True) from exc
        finally:
            sock.close()

    def raw(self, command: Command, *, timeout_s: float | None = None, idempotent: bool = True) -> bytes:
        """Run a shell command and return its output bytes (stdout and stderr together, as ``shell:`` gives)."""
        line = command_line(command)
        return self._shell(line, line, timeout_s, idempotent)

    def _shell(self, line: str, what: str, timeout_s: float | None, idempotent: bool) -> bytes:
        """Send ``line``; errors name ``what`` (the command as the caller wrote it)."""
        timeout = timeout_s or self.timeout_s

        def once() -> bytes:
            return self._read_all(self._open("shell:" + line, timeout))

        result: bytes = self._retrying(what, idempotent, once)
        return result

    def run(
        self, command: Command, *, timeout_s: float | None = None, idempotent: bool = False
    ) -> ShellResult:
        """Run a shell command; text output and its exit status (read from a marker the shell echoes).

        The command runs in a subshell, on lines of its own, so an ``exit``, a trailing backslash or a
        comment in it cannot keep the marker line from running.
        """
        line = command_line(command)
        data = self._shell(f"(\n{line}\n)\necho {EXIT_MARK}$?", line, timeout_s, idempotent)
        at = data.rfind(EXIT_MARK.encode())
        code: int | None = None
        if at >= 0:
            tail = data[at + len(EXIT_MARK) :].strip()
            code = int(tail) if tail.isdigit() else None
            data = data[:at]
        return ShellResult(data.decode("utf-8", errors="replace"), code)

    def text(self, command: Command, *, timeout_s: float | None = None) -> str:
        """Output of a read-only command, as text."""
        return self.raw(command, timeout_s=timeout_s, idempotent=True).decode("utf-8", errors="replace")

    # -- files -----------------------------------------------------------------------------------------------
    def push(self, data: bytes | Path, remote: str, *, mode: int = 0o644) -> int:
        """Write a file (or bytes) to ``remote``; a directory as ``remote`` keeps the local file name."""

        def once() -> int:
            try:
                return int(self._device.sync.push(data, remote, mode=mode))
            except (
                self._adb.errors.AdbSyncError
            ) as exc:  # refused (e.g. bytes into a directory): not transient
                raise DeviceError(
                    f"push refused: {exc}", device=self.serial, command=f"push {remote}"
                ) from exc
            except (self._adb.AdbError, OSError) as exc:
                raise _Transient(str(exc) or type(exc).__name__, accepted=False) from exc

        pushed: int = self._retrying(f"push {remote}", True, once)
        return pushed

    def pull(self, remote: str) -> bytes:
        """A file's bytes; FileNotFoundError when the device has nothing at ``remote``, DeviceError otherwise.

        When the device does not send the file, the path's mode says why (the sync service's ``STAT``, which
        answers 0 where the device's ``lstat`` finds nothing), never the wording of its refusal: nothing
        there is missing, a folder (or another non-file) is an error at once, and a file that failed to come
        is retried like any transient failure.
        """
        missing: list[str] = []

        def once() -> bytes:
            try:
                return bytes(self._device.sync.read_bytes(remote))
            except (self._adb.AdbError, OSError) as exc:
                reason = str(exc) or type(exc).__name__
            mode = self._mode(remote, reason)
            if mode == 0:
                missing.append(reason)
                return b""
            if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
                raise DeviceError(
                    f"cannot read {remote}: it is not a regular file",
                    device=self.serial,
                    command=f"pull {remote}",
                )
            raise _Transient(reason, accepted=False)

        data: bytes = self._retrying(f"pull {remote}", True, once)
        if missing:
            raise FileNotFoundError(f"{remote} on {self.serial}: no such file")
        return data

    def _mode(self, remote: str, reason: str) -> int:
        """The mode of ``remote`` on the device (0: nothing there), or _Transient with ``reason``."""
        try:
            return int(self._device.sync.stat(remote).mode)
        except (self._adb.AdbError, OSError) as exc:
            raise _Transient(reason, accepted=False) from exc

    def wait_ready(self, timeout_s: float = 10.0) -> None:
        """Wait until the device answers a trivial command (e.g. after a reboot)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.raw("true", timeout_s=min(self.timeout_s, timeout_s))
                return
            except DeviceError:
                if time.monotonic() >= deadline:
                    raise
