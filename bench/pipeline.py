"""Pipeline benchmark: N 311 submissions from ``case.submitted`` to ``CaseRemitted`` in a
department queue, the four services as separate OS processes on PostgreSQL, and, in the same
run, the raw ceiling of this machine (persistent 1 KB messages with publisher confirms through
one quorum queue, plain aio-pika publisher and consumer) and the contract's floor (the same
cases through the same topology with ``contract_floor.py``'s null services).

    python bench/pipeline.py                 # 5,000 cases as fast as they go
    python bench/pipeline.py --rate 50 --n 1500   # a steady 50 cases/s: the p99 goal
    python bench/pipeline.py --profile router     # py-spy the router during the run

It creates a fresh vhost and database and removes them. The last line printed is one JSON
object (``cases_per_s``, ``p50_ms``, ``p95_ms``, ``p99_ms``, ``raw_msgs_per_s``,
``messages_per_case``, ``ratio``, ``floor_cases_per_s``, ``floor_share``, CPU and RSS figures).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aio_pika
import asyncpg

from shared.messaging import department_remitted_key

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("intake", "router", "deadlines", "notifier")
AMQP = os.environ.get("DEFENSA311_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PG = os.environ.get(
    "DEFENSA311_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
IDLE_SECONDS = 10
DESCRIPTIONS = {
    "aseo": "Denuncio un vertedero de basura que crece cada semana en la esquina",
    "vias": "Hay un hueco enorme en la carretera principal frente a la escuela",
    "ambiente": "Están talando los árboles del parque del barrio sin control",
    "salud": "Hay ratas y cucarachas por todo el mercado municipal",
}
# What one case publishes on its way to the department: the submission, then CaseReceived,
# CaseClassified, CaseRemitted and the department's copy from the services' outboxes (each
# confirmed).
PATH_KEYS = (
    "case.submitted",
    "case.received",
    "case.classified",
    "case.remitted.{department}",
    department_remitted_key("{department}"),
)
PUBLISHES_PER_CASE = len(PATH_KEYS)


def topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: ``*`` is one word, ``#`` zero or more."""

    def match(p: list[str], k: list[str]) -> bool:
        if not p:
            return not k
        if p[0] == "#":
            return any(match(p[1:], k[i:]) for i in range(len(k) + 1))
        return bool(k) and p[0] in ("*", k[0]) and match(p[1:], k[1:])

    return match(pattern.split("."), key.split("."))


def deliveries_per_case() -> int:
    """The queue deliveries one case causes on its way to the department, counted on the
    services' own topology: each publish reaches every queue with a binding that matches its
    key, once: intake (the submission); router, deadlines, notifier and 311 (CaseReceived); 311
    (CaseClassified); deadlines and 311 (CaseRemitted); the department and the notifier (the
    department's copy, CaseRemittedToDepartment). 311 never sees the submission itself."""
    from shared.messaging import system_topology

    department = sorted(DESCRIPTIONS)[0]
    queues = system_topology(DESCRIPTIONS)
    return sum(
        1
        for key in PATH_KEYS
        for queue in queues
        if any(topic_matches(b, key.format(department=department)) for b in queue.bindings)
    )


# What a case weighs on the broker in the ratio's terms: one raw message of the ceiling is
# one publish and one delivery, and a case's deliveries outnumber its publishes.
MESSAGES_PER_CASE = deliveries_per_case()


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def infrastructure_pids() -> dict[str, list[int]]:
    """The RabbitMQ server's and PostgreSQL's processes now (pools keep backends alive)."""
    found: dict[str, list[int]] = {"rabbitmq": [], "postgresql": []}
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            comm = (proc / "comm").read_text().strip() if proc.name.isdigit() else ""
            if comm == "beam.smp":
                found["rabbitmq"].append(int(proc.name))
            elif comm.startswith("postgres"):
                found["postgresql"].append(int(proc.name))
    return found


def reaped_seconds(pid: int) -> float:
    """CPU seconds of the children a process waited for (the postmaster: ended backends)."""
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def infrastructure_cpu() -> dict[str, float]:
    """CPU seconds so far of the RabbitMQ server and of PostgreSQL (every backend alive, plus
    what the postmaster reaped from backends that ended), on this host."""
    groups = infrastructure_pids()
    postgres = set(groups["postgresql"])
    postmasters = [pid for pid in postgres if _parent(pid) not in postgres]
    return {
        "rabbitmq": sum(cpu_seconds(pid) for pid in groups["rabbitmq"]),
        "postgresql": sum(cpu_seconds(pid) for pid in postgres)
        + sum(reaped_seconds(pid) for pid in postmasters),
    }


def _parent(pid: int) -> int:
    with contextlib.suppress(OSError):
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    return 0


def cpu_snapshot(procs: dict[str, subprocess.Popen[bytes]]) -> dict[str, float]:
    """CPU seconds so far of each service, of RabbitMQ and of PostgreSQL."""
    return {n: cpu_seconds(p.pid) for n, p in procs.items()} | infrastructure_cpu()


def cpu_spent(
    procs: dict[str, subprocess.Popen[bytes]], before: dict[str, float], scale: float
) -> dict[str, float]:
    """CPU seconds since the ``before`` snapshot, times ``scale``, for each of its keys."""
    after = cpu_snapshot(procs)
    return {k: round(scale * (after[k] - before[k]), 2) for k in before}


def ratio(figures: dict[str, Any], raw: dict[str, Any]) -> float:
    """cases/s × messages_per_case / the raw ceiling's msgs/s."""
    return round(figures["cases_per_s"] * MESSAGES_PER_CASE / raw["raw_msgs_per_s"], 3)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class Services:
    def __init__(
        self, amqp_url: str, database_url: str, logs: Path, extra: dict[str, str] | None = None
    ) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DEFENSA311_")}
        self.env.update(
            {
                "DEFENSA311_AMQP_URL": amqp_url,
                "DEFENSA311_DATABASE_URL": database_url,
                "DEFENSA311_LOG_LEVEL": "WARNING",
                "DEFENSA311_HTTP_PORT": str(free_port()),
                "DEFENSA311_SMTP_PORT": str(free_port()),
                "PYTHONUNBUFFERED": "1",
                **(extra or {}),
            }
        )
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        # A real SMTP server that accepts and discards: with none listening, every e-mail
        # fails and is retried with backoff, which is not the notifier's steady state.
        self.smtp_sink = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aiosmtpd",
                "-n",
                "-c",
                "aiosmtpd.handlers.Sink",
                "-l",
                f"127.0.0.1:{self.env['DEFENSA311_SMTP_PORT']}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(logs / "smtp_sink.log").open("ab"),
        )

    def start(self, name: str, nice: int = 0) -> None:
        handle = (self.logs / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            ["nice", "-n", str(nice), sys.executable, "-m", "shared.cli", "run", name],
            env=self.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=str(ROOT),
        )

    async def ready(self, database_url: str, wait_s: float = 120) -> None:
        """Started when each process has its consumer on its queue (the topology is declared
        before consuming) and intake answers /readyz."""
        import httpx

        deadline = time.monotonic() + wait_s
        port = self.env["DEFENSA311_HTTP_PORT"]
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.procs.values()):
                raise RuntimeError(f"a service exited: {self.tails()}")
            with contextlib.suppress(Exception):
                async with httpx.AsyncClient(timeout=2) as http:
                    ok = (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
                if ok and await self._consumers() >= len(self.procs):
                    return
            await asyncio.sleep(0.3)
        raise RuntimeError(f"services not ready: {self.tails()}")

    async def _consumers(self) -> int:
        connection = await aio_pika.connect(self.env["DEFENSA311_AMQP_URL"])
        async with connection:
            channel = await connection.channel()
            total = 0
            for name in ("intake", "router", "deadlines", "notifier"):
                if name in self.procs:
                    q = await channel.declare_queue(f"defensa311.{name}", passive=True)
                    total += 1 if q.declaration_result.consumer_count else 0
            return total

    def tails(self) -> dict[str, str]:
        return {n: (self.logs / f"{n}.log").read_text(errors="replace")[-1500:] for n in self.procs}

    def measured(self) -> dict[str, subprocess.Popen[bytes]]:
        """The processes whose CPU the bench reads: the services and the SMTP sink."""
        return self.procs | {"smtp_sink": self.smtp_sink}

    def stop(self) -> None:
        for proc in self.measured().values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.measured().values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def submission(i: int, run: str) -> tuple[bytes, str]:
    department = sorted(DESCRIPTIONS)[i % len(DESCRIPTIONS)]
    ref = f"bench-{run}-{i}"
    body = {
        "event_id": str(uuid.uuid4()),
        "event_type": "CaseSubmitted",
        "occurred_at": "2026-11-24T10:00:00-05:00",
        "schema_version": 1,
        "external_ref": ref,
        # The reference travels in the description to the department (CaseRemitted).
        "description": f"{DESCRIPTIONS[department]}. Referencia {ref}",
        "citizen": {"full_name": "Ana Pérez", "id_number": "8-123-4567"},
        "notify": {"email": "ana@example.com"},
    }
    return json.dumps(body).encode(), ref


async def pipeline(
    amqp_url: str, n: int, rate: float | None, times: dict[str, dict[str, float]] | None = None
) -> dict[str, Any]:
    """Send ``n`` cases; ``times``, if given, receives each case's send and arrival times."""
    run = uuid.uuid4().hex[:6]
    sent: dict[str, float] = {}
    arrived: dict[str, float] = {}
    if times is not None:
        times.update(sent=sent, arrived=arrived)
    done = asyncio.Event()
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        consume = await connection.channel()
        await consume.set_qos(prefetch_count=500)

        async def on_remitted(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            now = time.monotonic()
            data = json.loads(message.body)
            if data.get("event_type") == "CaseRemittedToDepartment":
                ref = data["description"].rsplit("Referencia ", 1)[-1]
                arrived.setdefault(ref, now)
                if len(arrived) >= n:
                    done.set()
            await message.ack()

        async def on_311(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            await message.ack()  # 311 follows its cases; the bench only keeps the queue short

        for department in DESCRIPTIONS:
            queue = await consume.get_queue(f"defensa311.department.{department}")
            await queue.consume(on_remitted)
        await (await consume.get_queue("defensa311.platform311")).consume(on_311)

        publish = await connection.channel(publisher_confirms=True)
        exchange = await publish.get_exchange("defensa311")
        window = asyncio.Semaphore(200)  # publishes awaiting their confirm

        async def one(i: int) -> None:
            body, ref = submission(i, run)
            async with window:
                sent[ref] = time.monotonic()
                await exchange.publish(
                    aio_pika.Message(
                        body,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        content_type="application/json",
                    ),
                    routing_key="case.submitted",
                    mandatory=True,
                )

        started = time.monotonic()
        tasks = []
        for i in range(n):
            if rate:
                lag = started + i / rate - time.monotonic()
                if lag > 0:
                    await asyncio.sleep(lag)
            else:
                await window.acquire()  # keep at most the window in flight
                window.release()
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        published = time.monotonic()
        await asyncio.wait_for(done.wait(), timeout=max(120.0, n / 5))
        finished = max(arrived.values())
    latencies = [(arrived[ref] - sent[ref]) * 1000 for ref in sent]
    return {
        "cases": n,
        "seconds": round(finished - started, 2),
        "publish_seconds": round(published - started, 2),
        "cases_per_s": round(n / (finished - started), 1),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p95_ms": round(percentile(latencies, 95), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "mean_ms": round(statistics.fmean(latencies), 1),
    }


class Timeline:
    """CPU seconds of each process group every ``interval`` s during the run: which process
    was busy while the slowest cases waited."""

    def __init__(self, groups: dict[str, list[int]], interval: float = 0.05) -> None:
        self.groups = groups
        self.interval = interval
        self.samples: list[tuple[float, dict[str, float]]] = []

    async def run(self) -> None:
        while True:
            cpu = {g: sum(cpu_seconds(pid) for pid in pids) for g, pids in self.groups.items()}
            self.samples.append((time.monotonic(), cpu))
            await asyncio.sleep(self.interval)

    def busy(self, start: float, end: float) -> dict[str, float]:
        """CPU ms of each group between the samples around ``start`` and ``end``."""
        before = max((s for s in self.samples if s[0] <= start), default=self.samples[0])
        after = min((s for s in self.samples if s[0] >= end), default=self.samples[-1])
        return {g: round(1000 * (after[1][g] - before[1][g])) for g in self.groups} | {
            "window_ms": round(1000 * (after[0] - before[0]))
        }

    def slowest(self, times: dict[str, dict[str, float]], count: int = 5) -> list[dict[str, Any]]:
        """The ``count`` slowest cases whose waits do not overlap, and who was busy meanwhile."""
        sent, arrived = times["sent"], times["arrived"]
        started = min(sent.values())
        picked: list[tuple[float, float]] = []
        report = []
        for ref in sorted(sent, key=lambda r: sent[r] - arrived[r]):
            window = (sent[ref], arrived[ref])
            if any(window[0] < b and a < window[1] for a, b in picked):
                continue
            picked.append(window)
            report.append(
                {
                    "at_s": round(window[0] - started, 2),
                    "latency_ms": round(1000 * (window[1] - window[0]), 1),
                    "cpu_ms": self.busy(*window),
                }
            )
            if len(report) == count:
                break
        return report


async def raw_ceiling(amqp_url: str, count: int) -> dict[str, Any]:
    """Persistent 1 KB messages with confirms through one quorum queue, consumed with acks."""
    body = os.urandom(512).hex().encode()  # 1,024 bytes
    received = 0
    done = asyncio.Event()
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(
            "bench.raw", durable=True, arguments={"x-queue-type": "quorum"}
        )
        await channel.set_qos(prefetch_count=500)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal received
            await message.ack()
            received += 1
            if received >= count:
                done.set()

        await queue.consume(on_message)
        publish = await connection.channel(publisher_confirms=True)
        window = asyncio.Semaphore(200)

        async def one() -> None:
            async with window:
                await publish.default_exchange.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key="bench.raw",
                )

        started = time.monotonic()
        tasks = []
        for _ in range(count):
            await window.acquire()
            window.release()
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        await asyncio.wait_for(done.wait(), timeout=300)
        seconds = time.monotonic() - started
        await queue.delete(if_unused=False, if_empty=False)
    return {"raw_messages": count, "raw_msgs_per_s": round(count / seconds, 1)}


async def notification_statuses(database_url: str) -> dict[str, int]:
    """How many notifications are sent, pending, failed…: did the notifier keep up?"""
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch("SELECT status, count(*) FROM notifications GROUP BY 1")
    finally:
        await connection.close()
    return {row[0]: row[1] for row in rows}


async def searches_waiting(database_url: str) -> int | None:
    """How many of the filings' duplicate searches the router has still to run (its loop runs
    them once the cases stop arriving, or once 200 wait); None before that queue existed."""
    connection = await asyncpg.connect(database_url)
    try:
        if await connection.fetchval("SELECT to_regclass('duplicate_searches')") is None:
            return None
        return int(await connection.fetchval("SELECT count(*) FROM duplicate_searches"))
    finally:
        await connection.close()


async def database_sessions(database_url: str) -> int:
    """Connections opened to the database so far (each one a PostgreSQL backend forked)."""
    connection = await asyncpg.connect(database_url)
    try:
        return int(
            await connection.fetchval(
                "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
            )
        )
    finally:
        await connection.close()


async def run_all_idle_rss(amqp_url: str, database_url: str, logs: Path) -> int:
    """Idle RSS (kB) of ``defensa311 run all`` on the same database and vhost."""
    services = Services(amqp_url, database_url, logs)
    services.start("all")
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if '"msg": "started"' in (logs / "all.log").read_text(errors="replace"):
                break
            await asyncio.sleep(0.3)
        await asyncio.sleep(3)  # idle: let start-up work settle before reading RSS
        return rss_kb(services.procs["all"].pid)
    finally:
        services.stop()


def profile(pid: int, seconds: int, out: Path) -> subprocess.Popen[bytes]:
    py_spy = Path(sys.executable).parent / "py-spy"
    return subprocess.Popen(
        [str(py_spy), "record", "--pid", str(pid), "--duration", str(seconds),
         "--format", "raw", "--output", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def top_frames(collapsed: Path, limit: int = 12) -> list[tuple[str, float]]:
    """Share of samples each function appears in (inclusive), from py-spy's raw output."""
    totals: dict[str, int] = {}
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples += int(count)
        for frame in set(stack.split(";")):
            name = frame.split(" (")[0] + " (" + frame.split(" (")[-1].split(":")[0] + ")"
            totals[name] = totals.get(name, 0) + int(count)
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:limit]
    return [(name, round(100 * c / max(samples, 1), 1)) for name, c in ranked]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="cases to push through")
    parser.add_argument("--rate", type=float, default=None, help="steady cases/s (default: max)")
    parser.add_argument("--raw", type=int, default=20000, help="messages for the raw ceiling")
    parser.add_argument(
        "--warmup",
        type=int,
        default=100,
        help="cases sent first (at --rate) and not measured: connections, statement caches",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the services, e.g. --set DEFENSA311_BATCH_SIZE=64",
    )
    parser.add_argument(
        "--profile",
        choices=SERVICES,
        action="append",
        default=[],
        help="py-spy this service during the run (repeat for several)",
    )
    parser.add_argument(
        "--background",
        action="append",
        default=[],
        choices=SERVICES[1:],
        help="run this service at a lower CPU priority (--nice), e.g. the ones off the path",
    )
    parser.add_argument("--nice", type=int, default=10, help="niceness for --background")
    parser.add_argument(
        "--no-floor", action="store_true", help="skip the contract's floor after the engine"
    )
    parser.add_argument(
        "--floor-prefetch", type=int, default=32, help="each null service's prefetch (floor)"
    )
    args = parser.parse_args()

    vhost = f"d311-bench-{uuid.uuid4().hex[:8]}"
    db = f"d311_bench_{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    user = urlsplit(AMQP).username or "guest"
    rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
    admin = await asyncpg.connect(PG)
    await admin.execute(f'CREATE DATABASE "{db}"')
    amqp_url = with_path(AMQP, "/" + quote(vhost, safe=""))
    database_url = with_path(PG, "/" + db)
    logs = Path(tempfile.mkdtemp(prefix="d311-bench-"))
    extra = dict(item.split("=", 1) for item in args.set)
    services = Services(amqp_url, database_url, logs, extra)
    result: dict[str, Any] = {}
    try:
        services.start("intake")  # migrates the empty database first
        await services.ready(database_url)
        for name in SERVICES[1:]:
            services.start(name, args.nice if name in args.background else 0)
        await services.ready(database_url)
        await asyncio.sleep(3)  # idle: let start-up work settle before reading RSS
        idle = {n: rss_kb(p.pid) // 1024 for n, p in services.procs.items()}
        print(f"idle RSS MB: {idle}", flush=True)
        # What each process costs doing nothing (polls, timers, heartbeats), in % of a core:
        # at a low rate it is a good part of the CPU per case.
        idle_before = cpu_snapshot(services.measured())
        await asyncio.sleep(IDLE_SECONDS)
        idle_cpu = cpu_spent(services.measured(), idle_before, 100 / IDLE_SECONDS)
        print(f"idle CPU % of a core: {idle_cpu}", flush=True)

        raw_infra = infrastructure_cpu()
        raw = await raw_ceiling(amqp_url, args.raw)
        raw["rabbitmq_cpu_ms_per_raw_msg"] = round(
            1000 * (infrastructure_cpu()["rabbitmq"] - raw_infra["rabbitmq"]) / args.raw, 3
        )
        print(f"raw ceiling: {raw}", flush=True)

        if args.warmup:
            warm = await pipeline(amqp_url, args.warmup, args.rate)
            print(f"warm-up (not counted): {warm}", flush=True)

        spies = {
            name: profile(services.procs[name].pid, 20, logs / f"{name}.collapsed")
            for name in args.profile
        }
        timeline = Timeline(
            {n: [p.pid] for n, p in services.measured().items()} | infrastructure_pids()
        )
        sampler = asyncio.create_task(timeline.run())
        times: dict[str, dict[str, float]] = {}
        sessions_before = await database_sessions(database_url)
        cpu_before = cpu_snapshot(services.measured())
        bench_before = time.process_time()
        figures = await pipeline(amqp_url, args.n, args.rate, times)
        # less the one this count itself opens
        connections = await database_sessions(database_url) - sessions_before - 1
        spent = cpu_spent(services.measured(), cpu_before, 1000 / args.n)
        bench_cpu = time.process_time() - bench_before
        sampler.cancel()
        print(f"pipeline: {figures}", flush=True)
        print(f"database connections opened during the run: {connections}", flush=True)
        print("slowest cases, and the CPU ms each process spent while they waited:")
        for stall in timeline.slowest(times):
            print(f"  {stall}", flush=True)
        # CPU each service spent per case (until the last case arrived; the deadlines and
        # notifier queues may still hold work, which is not counted).
        cpu_ms = {n: spent.pop(n) for n in services.procs}
        print(f"CPU ms per case: {cpu_ms}", flush=True)
        # The rest of the machine per case: the broker, the database, the SMTP sink and this
        # client (which publishes the submissions and plays the departments and 311).
        other_ms = spent | {"bench_client": round(1000 * bench_cpu / args.n, 2)}
        print(f"CPU ms per case, elsewhere: {other_ms}", flush=True)
        peak = {n: rss_kb(p.pid, "VmHWM") // 1024 for n, p in services.procs.items()}
        notifications = await notification_statuses(database_url)
        print(f"notifications when the last case arrived: {notifications}", flush=True)
        searches = await searches_waiting(database_url)
        print(f"duplicate searches waiting when the last case arrived: {searches}", flush=True)
        print(f"peak RSS MB: {peak}", flush=True)
        for service, spy in spies.items():
            spy.wait(60)
            print(f"profile of {service} ({logs / f'{service}.collapsed'}):")
            for name, share in top_frames(logs / f"{service}.collapsed"):
                print(f"  {share:5.1f}%  {name}")
        services.stop()
        floor: dict[str, Any] = {}
        if not args.no_floor:
            # The contract's floor on the same machine moments later: the same cases through
            # the same topology, with null services in place of the four.
            from contract_floor import floor_run

            floor = await floor_run(args.n, args.rate, args.warmup, args.floor_prefetch)
            print(f"contract floor: {floor}", flush=True)
        all_idle = await run_all_idle_rss(amqp_url, database_url, logs) // 1024
        print(f"idle RSS MB of 'run all': {all_idle}", flush=True)
        result = {
            **figures,
            **raw,
            "messages_per_case": MESSAGES_PER_CASE,
            "publishes_per_case": PUBLISHES_PER_CASE,
            "ratio": ratio(figures, raw),
            "floor_cases_per_s": floor.get("cases_per_s"),
            "floor_share": (
                round(figures["cases_per_s"] / floor["cases_per_s"], 3) if floor else None
            ),
            "floor_ratio": ratio(floor, raw) if floor else None,
            "floor_cpu_ms_per_case": floor.get("cpu_ms_per_case"),
            "rate": args.rate,
            "warmup": args.warmup,
            "background": {name: args.nice for name in args.background},
            "cpu_ms_per_case": cpu_ms,
            "other_cpu_ms_per_case": other_ms,
            # The broker's work per case in raw messages (1 KB, confirmed, consumed): what a
            # case really weighs on RabbitMQ, against messages_per_case.
            "broker_raw_msgs_per_case": round(
                other_ms["rabbitmq"] / max(raw["rabbitmq_cpu_ms_per_raw_msg"], 1e-9), 1
            ),
            "settings": extra,
            "idle_rss_mb": idle,
            "idle_cpu_pct": idle_cpu,
            "peak_rss_mb": peak,
            "notifications": notifications,
            "duplicate_searches_waiting": searches,
            "db_connections_opened": connections,
            "run_all_idle_rss_mb": all_idle,
        }
    finally:
        services.stop()
        with contextlib.suppress(Exception):
            await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await admin.close()
        with contextlib.suppress(Exception):
            rabbitmqctl("delete_vhost", vhost)
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
