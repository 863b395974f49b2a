"""A real Redis Cluster for tests: 3 masters and 3 replicas, `redis-server` processes on loopback ports.

Started with `redis-cli --cluster create ... --cluster-replicas 1`, stopped (and its files removed) afterwards.
A master can be killed (SIGKILL, as in a crash): its replica is promoted after `NODE_TIMEOUT_MS`."""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

NODES = 6
NODE_TIMEOUT_MS = 1000
READY_DEADLINE_S = 60.0
HOST = "127.0.0.1"


def redis_server() -> str:
    found = shutil.which("redis-server") or shutil.which("valkey-server")
    if found is None:
        pytest.skip("no redis-server (or valkey-server) on PATH")
    return found


def redis_cli() -> str:
    found = shutil.which("redis-cli") or shutil.which("valkey-cli")
    if found is None:
        pytest.skip("no redis-cli (or valkey-cli) on PATH")
    return found


@dataclass
class Node:
    port: int
    bus_port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = None

    def client(self) -> redis.Redis:
        return redis.Redis(host=HOST, port=self.port, socket_timeout=2.0, socket_connect_timeout=1.0)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


def _quiet_ports(count: int) -> list[int]:
    """`count` different free ports below the kernel's ephemeral range: a port picked there (as `free_port` does)
    can be taken by any outgoing connection before redis-server binds it, and a cluster node binds two (its port and
    its bus). Each stays bound here until all are picked, so that no two nodes (nor a node's port and its bus) are
    given the same one."""
    with contextlib.ExitStack() as held:
        ports: list[int] = []
        while len(ports) < count:
            port = random.randrange(20_000, 32_000)
            sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
            ports.append(port)
        return ports


class RedisClusterProcesses:
    """Six `redis-server` processes in cluster mode, made into one cluster with a replica for each master."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        ports = _quiet_ports(2 * NODES)
        self.nodes = [Node(ports[2 * n], ports[2 * n + 1], folder / f"node-{n}") for n in range(NODES)]

    @property
    def url(self) -> str:
        """ECARD_REDIS_URL naming the cluster (every node, as a deployment would list its seeds)."""
        return "redis+cluster://" + ",".join(f"{HOST}:{node.port}" for node in self.nodes)

    def start(self) -> None:
        server = redis_server()
        for node in self.nodes:
            node.folder.mkdir(parents=True, exist_ok=True)
            log = (node.folder / "redis.log").open("wb")
            options = {
                "bind": HOST,
                "port": node.port,
                "cluster-enabled": "yes",
                "cluster-port": node.bus_port,
                "cluster-config-file": node.folder / "nodes.conf",
                "cluster-node-timeout": NODE_TIMEOUT_MS,
                # a replica takes over however long ago it last heard from its master
                "cluster-replica-validity-factor": 0,
                "dir": node.folder,
                "save": "",
                "appendonly": "no",
            }
            node.process = subprocess.Popen(
                [server, *(part for name, value in options.items() for part in (f"--{name}", str(value)))],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            log.close()
        for node in self.nodes:
            self._wait_answering(node)
        created = subprocess.run(
            [
                redis_cli(),
                "--cluster",
                "create",
                *(f"{HOST}:{node.port}" for node in self.nodes),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert created.returncode == 0, created.stdout.decode() + created.stderr.decode()
        self.wait_healthy()
        self._wait_replicas_synced()

    def _wait_replicas_synced(self) -> None:
        """Until every replica has its master's data: only then can it take over."""
        deadline = time.monotonic() + READY_DEADLINE_S
        for node in self.nodes:
            with node.client() as client:
                while True:
                    info = client.info("replication")
                    if info["role"] == "master" or info.get("master_link_status") == "up":
                        break
                    assert time.monotonic() < deadline, f"the replica on {node.port} did not sync"
                    time.sleep(0.05)

    def stop(self) -> None:
        for node in self.nodes:
            if node.alive:
                assert node.process is not None
                node.process.terminate()
        for node in self.nodes:
            if node.process is not None:
                try:
                    node.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait(timeout=10)
        shutil.rmtree(self.folder, ignore_errors=True)

    def _wait_answering(self, node: Node) -> None:
        deadline = time.monotonic() + READY_DEADLINE_S
        with node.client() as client:
            while True:
                assert node.alive, (node.folder / "redis.log").read_text(errors="replace")
                with contextlib.suppress(redis.RedisError):
                    if client.ping():
                        return
                assert time.monotonic() < deadline, f"redis-server on {node.port} did not answer"
                time.sleep(0.05)

    def _state(self, node: Node) -> tuple[bool, list[list[str]]]:
        """(cluster_state is ok, CLUSTER NODES lines) as this node sees them."""
        with node.client() as client:
            info = client.execute_command("CLUSTER", "INFO")
            lines = client.execute_command("CLUSTER", "NODES")
        text = info.decode() if isinstance(info, bytes) else str(info)
        listing = lines.decode() if isinstance(lines, bytes) else str(lines)
        return "cluster_state:ok" in text, [line.split() for line in listing.splitlines() if line.strip()]

    def wait_healthy(self) -> None:
        """Until every live node sees the cluster ok, with a live master for every slot."""
        deadline = time.monotonic() + READY_DEADLINE_S
        while True:
            with contextlib.suppress(redis.RedisError):
                if all(self._healthy_as_seen_by(node) for node in self.nodes if node.alive):
                    return
            assert time.monotonic() < deadline, "the cluster did not become healthy"
            time.sleep(0.1)

    def _healthy_as_seen_by(self, node: Node) -> bool:
        ok, lines = self._state(node)
        live_ports = {n.port for n in self.nodes if n.alive}
        served = 0
        for fields in lines:
            port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
            if "master" in fields[2].split(",") and "fail" not in fields[2] and port in live_ports:
                for span in fields[8:]:
                    if not span.startswith("["):
                        low, _, high = span.partition("-")
                        served += int(high or low) - int(low) + 1
        return ok and served == 16384

    def master_of(self, key: str) -> Node:
        """The node that is master of the slot `key` hashes to."""
        node = next(n for n in self.nodes if n.alive)
        with node.client() as client:
            slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
        _, lines = self._state(node)
        for fields in lines:
            if "master" not in fields[2].split(","):
                continue
            for span in fields[8:]:
                low, _, high = span.partition("-")
                if not span.startswith("[") and int(low) <= slot <= int(high or low):
                    port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
                    return next(n for n in self.nodes if n.port == port)
        raise AssertionError(f"no master serves slot {slot}")

    def kill(self, node: Node) -> None:
        """SIGKILL, as in a crash: no goodbye to the cluster."""
        assert node.process is not None
        node.process.kill()
        node.process.wait(timeout=10)


@contextlib.contextmanager
def running_cluster(folder: Path) -> Iterator[RedisClusterProcesses]:
    cluster = RedisClusterProcesses(folder)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
