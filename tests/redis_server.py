"""A real `redis-server` for the tests, on a free loopback port, without persistence.

A plain module (`from redis_server import RedisServer`), like loopback.py.
Never a mock or fakeredis: the scripts, TIME, leases and TTLs are the real
server's. The server runs with no RDB snapshots and no AOF, so a restart
starts it empty (the "Redis restarted empty" fault), and is killed when the
test session ends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from typing import Any

import redis

START_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server process on 127.0.0.1; `start`, `kill`, `restart`, `pause`, `resume`."""

    def __init__(self, port: int | None = None, *, options: tuple[str, ...] = ()) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError(
                "redis-server is not installed (Debian: apt-get install redis-server); "
                ".ci/run installs it"
            )
        self.executable = executable
        self.port = port or free_port()
        self.directory = tempfile.mkdtemp(prefix="circuitry-redis-")
        self.options = options  # more redis-server arguments, e.g. ("--maxmemory-policy", ...)
        self.process: subprocess.Popen[bytes] | None = None
        self.paused = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.directory,
                "--protected-mode",
                "no",
                "--loglevel",
                "warning",
                *self.options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with self.client() as client:
                    client.ping()
                return
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.02)

    def client(self, **options: Any) -> redis.Redis:
        options.setdefault("socket_timeout", 5.0)
        return redis.Redis(host="127.0.0.1", port=self.port, **options)

    def kill(self) -> None:
        """SIGKILL the server (connections refused from now on); its data is gone."""
        process = self.process
        if process is None:
            return
        if self.paused:
            os.kill(process.pid, signal.SIGCONT)
            self.paused = False
        process.kill()
        process.wait()
        self.process = None

    def restart(self) -> None:
        """Kill and start again on the same port: empty, scripts flushed."""
        self.kill()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: the server accepts connections (the kernel does) but never answers."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)
        self.paused = False

    def commandstats(self) -> dict[str, int]:
        """Calls per command so far (INFO commandstats), e.g. {"evalsha": 12}."""
        with self.client() as client:
            info = client.info("commandstats")
        return {key.removeprefix("cmdstat_"): int(value["calls"]) for key, value in info.items()}

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


class ReplyDropper:
    """A TCP proxy on 127.0.0.1 in front of a server that can lose its replies.

    While `dropping` is set, what the server answers is thrown away, so the
    client times out after the script ran: a reply lost on the way back, for
    real. While `losing` is set, requests are thrown away before they reach
    the server: the client times out and nothing ran. Every
    socket has a timeout and every thread is a daemon: a test that forgets
    to `close()` cannot hang the run.
    """

    def __init__(self, port: int) -> None:
        self.upstream = port
        self.dropping = threading.Event()
        self.losing = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                downstream, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream), timeout=5.0)
            except OSError:
                downstream.close()
                continue
            with self._lock:
                self._sockets += [downstream, upstream]
            threading.Thread(
                target=self._pump, args=(downstream, upstream, False), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(upstream, downstream, True), daemon=True
            ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, replies: bool) -> None:
        source.settimeout(0.1)
        try:
            while not self._closed.is_set():
                try:
                    data = source.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                if (self.dropping if replies else self.losing).is_set():
                    continue  # lost on the way
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
