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
                # A replica's first sync starts at once (the default waits 5 s for more replicas).
                "--repl-diskless-sync-delay",
                "0",
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


CLUSTER_OPTIONS = (
    "--cluster-enabled",
    "yes",
    "--cluster-config-file",
    "nodes.conf",
    "--cluster-node-timeout",
    "1000",  # ms before a silent node is failed (and its replica promoted)
    # The healthy masters keep serving their slots while one is down (the
    # default, yes, fails every key of the cluster for one lost slot).
    "--cluster-require-full-coverage",
    "no",
)


def wait_synced(servers: list[RedisServer], limit: float = 30.0) -> None:
    """Wait until each replica among `servers` has its link to its master up."""
    deadline = time.monotonic() + limit
    for server in servers:
        while True:
            with server.client() as client:
                info = client.info("replication")
            if info.get("role") != "slave" or info.get("master_link_status") == "up":
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"replica on port {server.port} did not sync: {info}")
            time.sleep(0.05)


class RedisClusterServers:
    """A real Redis Cluster on 127.0.0.1: `masters` masters, each with `replicas` replicas.

    Each node is a `RedisServer` (`nodes`; `masters()` maps a slot to its
    master's node as the cluster says now) with a cluster bus port of its
    own; `start` creates the cluster with `redis-cli --cluster create` and
    waits until every node says `cluster_state:ok`; `stop` kills every node.
    """

    def __init__(self, masters: int = 3, replicas: int = 0) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not installed (Debian: apt-get install redis-tools)")
        self.cli = cli
        self.replicas = replicas
        self.nodes = [
            RedisServer(options=(*CLUSTER_OPTIONS, "--cluster-port", str(free_port())))
            for _ in range(masters * (1 + replicas))
        ]

    @property
    def url(self) -> str:
        return self.nodes[0].url.removesuffix("/0")

    def start(self) -> None:
        try:
            for node in self.nodes:
                node.start()
            subprocess.run(
                [
                    self.cli,
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{node.port}" for node in self.nodes),
                    "--cluster-replicas",
                    str(self.replicas),
                    "--cluster-yes",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=60,
            )
            self.wait_ok(self.nodes)
            wait_synced(self.nodes)
        except BaseException:
            self.stop()
            raise

    def wait_ok(self, nodes: list[RedisServer], limit: float = 30.0) -> None:
        """Wait until each of `nodes` says `cluster_state:ok` and knows every slot."""
        deadline = time.monotonic() + limit
        for node in nodes:
            while True:
                with node.client() as client:
                    info = client.execute_command("CLUSTER", "INFO")
                text = info.decode() if isinstance(info, bytes) else str(info)
                if "cluster_state:ok" in text and "cluster_slots_assigned:16384" in text:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the cluster did not come up: {text}")
                time.sleep(0.05)

    def master_of(self, slot: int, among: list[RedisServer] | None = None) -> RedisServer:
        """The node serving `slot` now, as the first live node of `among` says."""
        for asked in among or self.nodes:
            if asked.process is None or asked.paused:
                continue
            with asked.client() as client:
                ranges = client.execute_command("CLUSTER", "SLOTS")
            for first, last, master, *_ in ranges:
                if first <= slot <= last:
                    port = int(master[1])
                    return next(node for node in self.nodes if node.port == port)
        raise RuntimeError(f"no node serves slot {slot}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class SentinelServers:
    """A master, `replicas` replicas and `sentinels` redis-sentinel processes on 127.0.0.1.

    The sentinels watch the master as `service` with a quorum of one and a
    one-second `down-after-milliseconds`, so a killed master is replaced in a
    few seconds; `failover()` asks for one at once (SENTINEL FAILOVER).
    """

    service = "circuitry"

    def __init__(self, replicas: int = 1, sentinels: int = 1) -> None:
        executable = shutil.which("redis-sentinel")
        if executable is None:
            raise RuntimeError(
                "redis-sentinel is not installed (Debian: apt-get install redis-sentinel); "
                ".ci/run installs it"
            )
        self.executable = executable
        self.master = RedisServer()
        self.replicas = [
            RedisServer(options=("--replicaof", "127.0.0.1", str(self.master.port)))
            for _ in range(replicas)
        ]
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.directory = tempfile.mkdtemp(prefix="circuitry-sentinel-")
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", port) for port in self.sentinel_ports]

    @property
    def servers(self) -> list[RedisServer]:
        return [self.master, *self.replicas]

    def start(self) -> None:
        try:
            for server in self.servers:
                server.start()
            wait_synced(self.replicas)
            for port in self.sentinel_ports:
                config = os.path.join(self.directory, f"sentinel-{port}.conf")
                with open(config, "w") as file:
                    file.write(
                        f"port {port}\nbind 127.0.0.1\nprotected-mode no\n"
                        f"dir {self.directory}\nloglevel warning\n"
                        f"sentinel monitor {self.service} 127.0.0.1 {self.master.port} 1\n"
                        f"sentinel down-after-milliseconds {self.service} 1000\n"
                        f"sentinel failover-timeout {self.service} 5000\n"
                    )
                self.processes.append(
                    subprocess.Popen(
                        [self.executable, config],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            deadline = time.monotonic() + START_TIMEOUT
            for port in self.sentinel_ports:
                while not self._replicas_known(port):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"redis-sentinel on port {port} did not start")
                    time.sleep(0.05)
        except BaseException:
            self.stop()
            raise

    def _replicas_known(self, port: int) -> bool:
        """Whether the sentinel on `port` answers and knows every replica, in sync."""
        try:
            with redis.Redis(host="127.0.0.1", port=port, socket_timeout=5.0) as client:
                found = client.execute_command("SENTINEL", "REPLICAS", self.service)
        except redis.RedisError:
            return False
        # (redis-py parses the reply into dicts, whose flags vary by version: read their text)
        states = [str(entry) for entry in found]
        return len(states) == len(self.replicas) and all(
            "disconnected" not in flags and "s_down" not in flags for flags in states
        )

    def master_port(self) -> int:
        """The master's port as the first sentinel says now."""
        with redis.Redis(host="127.0.0.1", port=self.sentinel_ports[0], socket_timeout=5.0) as c:
            _host, port = c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        return int(port)

    def failover(self) -> None:
        """SENTINEL FAILOVER: a replica is promoted, the master demoted (both keep running)."""
        with redis.Redis(host="127.0.0.1", port=self.sentinel_ports[0], socket_timeout=5.0) as c:
            c.execute_command("SENTINEL", "FAILOVER", self.service)

    def stop(self) -> None:
        for process in self.processes:
            process.kill()
            process.wait()
        self.processes = []
        for server in self.servers:
            server.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
