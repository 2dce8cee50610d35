"""The server under test: start it as a child process, read its CPU and memory from /proc, read its batch statistics."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import grpc

import server as server_package
from server.protocol import grpc_service_pb2 as pb
from server.protocol import grpc_service_pb2_grpc as pb_grpc

LIVE_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 30.0
LOG_TAIL_CHARACTERS = 4000
# The kernel gives each connection to a worker at random: 8 connections miss one of 2 workers with p < 1%.
STATS_CONNECTIONS = 8
_CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
_TCP_LISTEN = "0A"  # the state column of /proc/net/tcp


class ServerStartError(RuntimeError):
    """The server did not come up; the message carries the end of its log."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerUnderTest:
    """`python -m server --workers N` on a free loopback port, logging to a file; stopped with SIGTERM."""

    def __init__(self, repository: Path, log_path: Path, workers: int) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log_path = log_path
        self.workers = workers
        args = [sys.executable, "-m", "server", "--model-repository", str(repository), "--workers", str(workers)]
        args += ["--grpc-host", "127.0.0.1", "--grpc-port", str(self.port), "--metrics-port", "0"]
        # The child must import the same `server` package as this process, installed or not.
        package_root = str(Path(server_package.__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    @property
    def pid(self) -> int:
        return self.process.pid

    def __enter__(self) -> ServerUnderTest:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARACTERS:]

    def wait_until_live(self, timeout_seconds: float = LIVE_TIMEOUT_SECONDS) -> None:
        deadline = time.monotonic() + timeout_seconds
        with grpc.insecure_channel(self.address) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise ServerStartError(f"server exited with {self.process.returncode}:\n{self.log_tail()}")
                try:
                    # Every worker must listen first: connections made earlier all go to the ones that do.
                    if (
                        listening_sockets(self.port) >= self.workers
                        and stub.ServerLive(pb.ServerLiveRequest(), timeout=1.0).live
                    ):
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.1)
        raise ServerStartError(
            f"server not live with {self.workers} listening workers after {timeout_seconds:.0f}s:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """SIGTERM and wait (the server drains in-flight calls); SIGKILL if it will not go."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def listening_sockets(port: int) -> int:
    """TCP sockets in LISTEN state on `port`: one per server worker, as they share it with SO_REUSEPORT."""
    count = 0
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            local_address, state = line.split()[1], line.split()[3]
            count += state == _TCP_LISTEN and int(local_address.rsplit(":", 1)[1], 16) == port
    return count


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants: the server may be a supervisor with worker processes."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited while we looked
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    tree, frontier = [pid], [pid]
    while frontier:
        frontier = [child for parent in frontier for child in children.get(parent, [])]
        tree += frontier
    return tree


def _cpu_seconds_of_one(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Fields after the command name, which is in parentheses and may hold spaces; utime and stime are 14 and 15.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS_PER_SECOND


def _resident_mib_of_one(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0  # a zombie has no VmRSS line


def _sum_over_tree(pid: int, measure: Callable[[int], float]) -> float:
    total = 0.0
    for member in process_tree(pid):
        try:
            total += measure(member)
        except (OSError, ValueError):
            continue  # exited between the listing and the reading
    return total


def cpu_seconds_of(pid: int) -> float:
    """User + system CPU used so far by every thread of `pid` and of its descendants, from /proc."""
    return _sum_over_tree(pid, _cpu_seconds_of_one)


def resident_mib(pid: int) -> float:
    """VmRSS of `pid` and its descendants, summed (pages they share count once per process), in MiB."""
    return _sum_over_tree(pid, _resident_mib_of_one)


def machine_busy_cpu_seconds() -> float:
    """CPU time every process on this machine has used, from /proc/stat: to see who else shared the run."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / _CLOCK_TICKS_PER_SECOND


@dataclass(frozen=True)
class BatchCounters:
    """A model's cumulative counters: rows run, batches run, and (batch size, batches run) pairs."""

    rows: int = 0
    batches: int = 0
    batches_by_size: tuple[tuple[int, int], ...] = ()

    def since(self, earlier: BatchCounters) -> BatchCounters:
        mine, theirs = dict(self.batches_by_size), dict(earlier.batches_by_size)
        by_size = ((size, mine.get(size, 0) - theirs.get(size, 0)) for size in sorted(set(mine) | set(theirs)))
        return BatchCounters(
            rows=self.rows - earlier.rows,
            batches=self.batches - earlier.batches,
            batches_by_size=tuple((size, count) for size, count in by_size if count),
        )

    def plus(self, other: BatchCounters) -> BatchCounters:
        mine, theirs = dict(self.batches_by_size), dict(other.batches_by_size)
        return BatchCounters(
            rows=self.rows + other.rows,
            batches=self.batches + other.batches,
            batches_by_size=tuple((s, mine.get(s, 0) + theirs.get(s, 0)) for s in sorted(set(mine) | set(theirs))),
        )

    @property
    def average_batch(self) -> float | None:
        return self.rows / self.batches if self.batches else None


class BatchCounterProbe:
    """Reads a model's batch counters from every server worker it can reach, over connections kept open.

    With `--workers N` the server's processes share one port and each answers
    ModelStatistics for itself only. A connection stays with the worker that
    accepted it, so the probe opens several (the kernel picks a worker for
    each at random) and reads them all before and after an idle-to-idle run.
    Connections that reached the same worker read identical (before, after)
    pairs, because an idle server's counters do not move, and count once.
    """

    def __init__(self, address: str, model: str, connections: int = STATS_CONNECTIONS) -> None:
        self.model = model
        # A local subchannel pool gives each channel its own TCP connection instead of one shared one.
        self._channels = [
            grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(connections)
        ]

    def __enter__(self) -> BatchCounterProbe:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        for channel in self._channels:
            channel.close()

    def read(self) -> list[BatchCounters | None]:
        """One reading per connection; None where the server does not offer statistics."""
        return [_read_batch_counters(channel, self.model) for channel in self._channels]


def batches_between(before: list[BatchCounters | None], after: list[BatchCounters | None]) -> BatchCounters | None:
    """What every reached worker ran between two readings of the same probe; None without statistics."""
    pairs = {(b, a) for b, a in zip(before, after, strict=True) if b is not None and a is not None}
    if not pairs:
        return None
    total = BatchCounters()
    for earlier, later in pairs:
        total = total.plus(later.since(earlier))
    return total


def _read_batch_counters(channel: grpc.Channel, model: str) -> BatchCounters | None:
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    try:
        response = stub.ModelStatistics(pb.ModelStatisticsRequest(name=model), timeout=10.0)
    except grpc.RpcError:
        return None
    if not response.model_stats:
        return None
    stats = response.model_stats[0]
    return BatchCounters(
        rows=stats.inference_count,
        batches=stats.execution_count,
        batches_by_size=tuple(sorted((entry.batch_size, entry.compute_infer.count) for entry in stats.batch_stats)),
    )
