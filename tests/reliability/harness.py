"""The reliability harness: the four services as OS processes, a steady flow of 311
submissions and department answers from plain aio-pika clients, faults, and the checks.

Nothing here knows the services' internals beyond the public contract (exchange, routing
keys, queue names, event bodies), the database of record and the HTTP API; the checks read
the database directly to count what was stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import subprocess
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import httpx
from aio_pika.abc import AbstractIncomingMessage

from services.router.rules import RuleSet
from shared.config import load_config
from shared.routing import account_of
from shared.settings import DEFAULT_CONFIG
from tests.support import ServiceProcess, asyncpg_dsn, eventually, free_port, process_env

SERVICES = ("intake", "router", "deadlines", "notifier")
EXCHANGE = "defensa311"
STAFF_TOKEN = "reliability-staff-token-0123456789"
NS = uuid.UUID("6d3c1d2e-4a7b-4f00-9d31-311000000000")

# Descriptions the default rules remit to a department (checked below, so a change of the
# rules fails loudly here rather than as a case stuck in the wrong state).
REMIT_DESCRIPTIONS: dict[str, str] = {
    "aseo": "Denuncio un vertedero de basura que crece cada semana en la esquina",
    "vias": "Hay un hueco enorme en la carretera principal frente a la escuela",
    "obras": "Denuncio una construcción sin permiso que tapa la servidumbre",
    "ambiente": "Están talando los árboles del parque del barrio sin control",
    "policia": "Los vendedores ambulantes ocupan toda la acera de la avenida",
    "salud": "Hay ratas y cucarachas por todo el mercado municipal",
    "rrhh": "Un funcionario me pidió coima para agilizar el trámite del permiso",
}


def check_descriptions() -> None:
    config = load_config(DEFAULT_CONFIG)
    rules = RuleSet.from_config(config.rules, set(config.department_codes))
    for department, description in REMIT_DESCRIPTIONS.items():
        result = rules.classify(kind=None, category=None, description=description)
        assert result.route == f"remit:{department}", (department, result.route)
        assert result.kind == "denuncia", (department, result.kind)


def queue_name(department: str) -> str:
    return f"{EXCHANGE}.department.{department}"


# ------------------------------------------------------------------------------- processes


def pg_cluster_version() -> str:
    return sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]


def pg_ctl(action: str) -> None:
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", pg_cluster_version(), "main", action],
        check=True,
        capture_output=True,
        timeout=120,
    )


@dataclass
class Cluster:
    """N instances of each service as separate OS processes on one database and vhost."""

    amqp_url: str
    pg_url: str
    tmp: Path
    instances: int = 1
    procs: dict[str, list[ServiceProcess]] = field(default_factory=dict)
    http_ports: list[int] = field(default_factory=list)
    smtp_port: int = 0
    kills: Counter[str] = field(default_factory=Counter)
    extra_env: dict[str, str] = field(default_factory=dict)
    # Where each process's log stood when it was last (re)started.
    _log_mark: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in SERVICES:
            self.procs[name] = []
            for i in range(self.instances):
                port = free_port()
                if name == "intake":
                    self.http_ports.append(port)
                env = process_env(
                    self.amqp_url,
                    self.pg_url,
                    DEFENSA311_HTTP_PORT=str(port),
                    DEFENSA311_SMTP_PORT=str(self.smtp_port),
                    DEFENSA311_API_TOKENS=f"staff={STAFF_TOKEN}",
                    DEFENSA311_NOTIFY_BACKOFF_SECONDS="0.5",
                    **self.extra_env,
                )
                self.procs[name].append(ServiceProcess(name, env, self.tmp / f"{name}-{i}.log"))

    def all(self) -> list[ServiceProcess]:
        return [p for group in self.procs.values() for p in group]

    async def start(self) -> None:
        for proc in self.all():
            self._mark(proc)
            proc.start()
        await self.wait_started()

    def _mark(self, proc: ServiceProcess) -> None:
        self._log_mark[proc.log_path.name] = len(proc.log())

    async def wait_started(self, timeout: float = 120) -> None:
        """Every process has logged ``started`` once per (re)start and intake answers ready."""

        def started() -> bool:
            return all(
                '"msg": "started"' in p.log()[self._log_mark[p.log_path.name] :] and p.alive()
                for p in self.all()
            )

        try:
            await eventually(started, timeout=timeout, interval=0.2)
            for port in self.http_ports:
                await eventually(lambda port=port: _ready(port), timeout=timeout, interval=0.2)
        except AssertionError as exc:
            raise AssertionError(f"services did not start: {self.tails()}") from exc

    def kill9_and_restart(self, name: str, index: int = 0) -> None:
        proc = self.procs[name][index]
        proc.kill9()
        self.kills[name] += 1
        self._mark(proc)
        proc.restart()

    def dead(self) -> list[str]:
        return [p.log_path.name for p in self.all() if not p.alive()]

    def tails(self, chars: int = 2500) -> dict[str, str]:
        return {p.log_path.name: p.log()[-chars:] for p in self.all()}

    def stop(self) -> None:
        for proc in self.all():
            proc.stop()


async def _ready(port: int) -> bool:
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            return (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
    except httpx.HTTPError:
        return False


# ------------------------------------------------------------------------------- clients


def robust_url(amqp_url: str) -> str:
    return amqp_url + "?reconnect_interval=0.5"


class Publisher:
    """A plain aio-pika publisher with confirms that retries until the broker confirmed.

    Retrying after an unconfirmed publish may deliver the same message twice: that is the
    at-least-once contract, and the services must not store it twice.
    """

    def __init__(self, amqp_url: str) -> None:
        self._url = robust_url(amqp_url)
        self.retries = 0
        self.published = 0

    async def open(self) -> None:
        self._connection = await aio_pika.connect_robust(self._url)
        self._channel = await self._connection.channel(
            publisher_confirms=True, on_return_raises=True
        )
        self._exchange = await self._channel.get_exchange(EXCHANGE)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._connection.close()

    async def publish(
        self,
        body: bytes,
        routing_key: str,
        *,
        message_id: str | None = None,
        content_type: str = "application/json",
    ) -> None:
        while True:
            try:
                await self._exchange.publish(
                    aio_pika.Message(
                        body,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        content_type=content_type,
                        message_id=message_id,
                        # The services' own account: trusted on departments' keys too.
                        user_id=account_of(self._url),
                    ),
                    routing_key=routing_key,
                    mandatory=True,
                    timeout=10,
                )
                self.published += 1
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                self.retries += 1
                await asyncio.sleep(0.2)  # the client's retry pace, while the broker is away

    async def publish_json(self, data: dict[str, Any], routing_key: str) -> None:
        await self.publish(
            json.dumps(data).encode(), routing_key, message_id=str(data.get("event_id") or "")
        )


def submission(external_ref: str, department: str) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "CaseSubmitted",
        "occurred_at": "2026-11-24T10:00:00-05:00",
        "schema_version": 1,
        "external_ref": external_ref,
        "description": REMIT_DESCRIPTIONS[department],
        "citizen": {"full_name": "Ana Pérez", "id_number": "8-123-4567"},
        "notify": {"email": "ana@example.com"},
    }


def department_answer(
    case: dict[str, Any], department: str, *, event_id: str | None = None
) -> bytes:
    """The department's answer; by default one ``event_id`` per case and department."""
    return json.dumps(
        {
            "event_id": event_id or str(uuid.uuid5(NS, f"answer:{case['case_id']}:{department}")),
            "event_type": "DepartmentResponded",
            "occurred_at": "2026-11-25T10:00:00-05:00",
            "schema_version": 1,
            "case_id": case["case_id"],
            "tracking_code": case["tracking_code"],
            "department": department,
            "response": "Atendido: se envió una cuadrilla y se corrigió la situación.",
        }
    ).encode()


class Departments:
    """Every department as a plain aio-pika client: consume its queue, answer each remitted
    case with ``DepartmentResponded`` (one ``event_id`` per case, so a re-answer is the same
    event), ack after the answer is confirmed."""

    def __init__(self, amqp_url: str, departments: list[str]) -> None:
        self._url = robust_url(amqp_url)
        self.departments = departments
        self.publisher = Publisher(amqp_url)
        # queue -> event_id -> deliveries
        self.remitted: dict[str, Counter[str]] = defaultdict(Counter)
        self.cases: dict[str, dict[str, Any]] = {}  # case_id -> the remitted case (latest)
        self.case_queue: dict[str, set[str]] = defaultdict(set)  # case_id -> queues it came on
        self.rejected: dict[str, set[str]] = defaultdict(set)  # queue -> refused_event_ids
        self.answer = True

    async def open(self) -> None:
        await self.publisher.open()
        self._connection = await aio_pika.connect_robust(self._url)
        self._channel = await self._connection.channel()
        await self._channel.set_qos(prefetch_count=64)
        for department in self.departments:
            queue = await self._channel.get_queue(queue_name(department))
            await queue.consume(self._handler(department))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._connection.close()
        await self.publisher.close()

    def _handler(self, department: str) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
        queue = queue_name(department)

        async def on_message(message: AbstractIncomingMessage) -> None:
            try:
                data = json.loads(message.body)
                if data.get("event_type") == "CaseRemitted":
                    self.remitted[queue][data["event_id"]] += 1
                    self.cases[data["case_id"]] = data
                    self.case_queue[data["case_id"]].add(queue)
                    if self.answer:
                        await self.publisher.publish(
                            department_answer(data, department),
                            f"case.responded.{department}",
                        )
                elif data.get("event_type") == "SubmissionRejected":
                    self.rejected[queue].add(data["refused_event_id"])
                await message.ack()
            except asyncio.CancelledError:
                raise
            except Exception:
                with contextlib.suppress(Exception):
                    await message.reject(requeue=True)

        return on_message

    def duplicates(self) -> dict[str, int]:
        return {
            queue: sum(n - 1 for n in counts.values())
            for queue, counts in self.remitted.items()
            if any(n > 1 for n in counts.values())
        }


class Platform311:
    """The 311 platform following its cases on ``defensa311.platform311`` (``case.#``)."""

    def __init__(self, amqp_url: str) -> None:
        self._url = robust_url(amqp_url)
        self.received: dict[str, set[str]] = defaultdict(set)  # external_ref -> case_ids
        self.resolved: set[str] = set()
        self.rejected: set[str] = set()  # refused_event_id of SubmissionRejected (no department)
        self.other: Counter[str] = Counter()

    async def open(self) -> None:
        self._connection = await aio_pika.connect_robust(self._url)
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=256)
        queue = await channel.get_queue(f"{EXCHANGE}.platform311")
        await queue.consume(self._on_message)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._connection.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            data = json.loads(message.body)
            kind = data.get("event_type") if isinstance(data, dict) else None
        except ValueError:
            data, kind = None, "not-json"
        if kind == "CaseReceived" and isinstance(data, dict):
            self.received[str(data.get("external_ref"))].add(data["case_id"])
        elif kind == "CaseResolved" and isinstance(data, dict):
            self.resolved.add(data["case_id"])
        elif kind == "SubmissionRejected" and isinstance(data, dict) and not data.get("department"):
            self.rejected.add(str(data.get("refused_event_id")))
        else:
            self.other[str(kind)] += 1
        with contextlib.suppress(Exception):
            await message.ack()


# ------------------------------------------------------------------------------- the flow


@dataclass
class Flow:
    """What was sent, and the clients that saw what came back."""

    publisher: Publisher
    departments: Departments
    platform: Platform311
    expected: dict[str, str] = field(default_factory=dict)  # external_ref -> department
    rng: random.Random = field(default_factory=random.Random)

    async def submit(self, department: str | None = None) -> str:
        department = department or self.rng.choice(sorted(REMIT_DESCRIPTIONS))
        ref = f"311-{uuid.uuid4().hex[:12]}"
        self.expected[ref] = department
        await self.publisher.publish_json(submission(ref, department), "case.submitted")
        return ref

    async def steady(
        self,
        count: int,
        rate: float,
        between: Callable[[int], Awaitable[None]] | None = None,
    ) -> float:
        """Submit ``count`` cases at ``rate`` per second; return the seconds it took."""
        started = time.monotonic()
        for i in range(count):
            await self.submit()
            if between is not None:
                await between(i)
            lag = started + (i + 1) / rate - time.monotonic()
            if lag > 0:
                await asyncio.sleep(lag)  # pacing of the offered load, not a wait for a result
        return time.monotonic() - started


@contextlib.asynccontextmanager
async def open_flow(amqp_url: str, seed: int) -> Any:
    departments = Departments(amqp_url, sorted(load_config(DEFAULT_CONFIG).department_codes))
    flow = Flow(Publisher(amqp_url), departments, Platform311(amqp_url), rng=random.Random(seed))
    await flow.publisher.open()
    await departments.open()
    await flow.platform.open()
    try:
        yield flow
    finally:
        await flow.platform.close()
        await departments.close()
        await flow.publisher.close()


# ------------------------------------------------------------------------------- checks


TRANSIENT = (OSError, httpx.HTTPError, asyncpg.PostgresError, aio_pika.exceptions.AMQPError)
SERVICE_QUEUES = tuple(f"{EXCHANGE}.{n}" for n in (*SERVICES, "platform311"))


async def queue_depths(amqp_url: str, names: list[str]) -> dict[str, int]:
    """Exact depths by passive declare (``rabbitmqctl`` counts of quorum queues lag)."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        depths = {}
        for name in names:
            queue = await channel.declare_queue(name, passive=True)
            depths[name] = queue.declaration_result.message_count or 0
        return depths


async def read_dlq(amqp_url: str, name: str) -> list[tuple[str, bytes]]:
    """Every message of a DLQ with its reason header; they stay there (never acked)."""
    out: list[tuple[str, bytes]] = []
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        while (message := await queue.get(fail=False)) is not None:
            reason = (message.headers or {}).get("x-defensa311-reason")
            out.append((str(reason) if reason is not None else "", message.body))
    return out  # closing the channel returns every message to the queue


class Database:
    def __init__(self, pg_url: str) -> None:
        self._dsn = asyncpg_dsn(pg_url)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self._dsn)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    async def scalar(self, query: str, *args: Any) -> Any:
        rows = await self.fetch(query, *args)
        return rows[0][0] if rows else None


@dataclass
class Expect:
    """What the poison (if any) should have produced."""

    dlq: dict[str, int] = field(default_factory=dict)  # dlq name -> messages
    # dlq -> {part of the reason header: how many messages carry it}
    reasons: dict[str, Counter[str]] = field(default_factory=dict)
    rejected_311: set[str] = field(default_factory=set)  # refused event ids (wrong schema)
    rejected_department: dict[str, set[str]] = field(default_factory=dict)  # queue -> ids


@dataclass
class Verdict:
    figures: dict[str, Any]
    problems: list[str]


async def settle(
    cluster: Cluster, flow: Flow, db: Database, expect: Expect, *, timeout: float
) -> tuple[Verdict, float]:
    """Wait until the system is quiet (outbox sent, every queue empty) and every check
    passes; after ``timeout`` return the last verdict with its problems. The checks are all
    "eventually" properties, so polling them is how the end of the flow is recognised."""
    started = time.monotonic()
    verdict = Verdict({}, ["not checked"])
    while time.monotonic() - started < timeout:
        quiet = await _quiet(cluster, flow, db)
        try:
            verdict = await verify(cluster, flow, db, expect)
        except TRANSIENT as exc:
            verdict = Verdict({}, [f"cannot check yet: {exc!r}"])
        if quiet:
            verdict.problems = [p for p in verdict.problems if p != "busy"]
        else:
            verdict.problems.append("busy")
        if not verdict.problems:
            break
        await asyncio.sleep(1.0)  # poll interval
    return verdict, time.monotonic() - started


async def _quiet(cluster: Cluster, flow: Flow, db: Database) -> bool:
    try:
        pending = await db.scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        depths = await queue_depths(
            cluster.amqp_url,
            [*SERVICE_QUEUES, *(queue_name(d) for d in flow.departments.departments)],
        )
    except TRANSIENT:
        return False
    return not pending and not any(depths.values())


async def verify(cluster: Cluster, flow: Flow, db: Database, expect: Expect) -> Verdict:
    problems: list[str] = []
    figures: dict[str, Any] = {"good": len(flow.expected)}
    refs = list(flow.expected)

    # 1. every good submission stored exactly once
    rows = await db.fetch(
        "SELECT external_ref, count(*) AS n FROM cases WHERE channel = '311' GROUP BY external_ref"
    )
    stored = {r["external_ref"]: r["n"] for r in rows}
    missing = [r for r in refs if r not in stored]
    twice = {r: n for r, n in stored.items() if n > 1}
    stray = [r for r in stored if r not in flow.expected]
    if missing:
        problems.append(f"{len(missing)} good submissions not stored (e.g. {missing[:3]})")
    if twice:
        problems.append(f"{len(twice)} submissions stored more than once")
    if stray:
        problems.append(f"{len(stray)} cases stored that were never good submissions")

    # 2. every case reached the state of its path, in its department, once each step
    cases = await db.fetch(
        "SELECT id, external_ref, state, department FROM cases WHERE external_ref = ANY($1)", refs
    )
    wrong = [
        (c["external_ref"], c["state"], c["department"])
        for c in cases
        if c["state"] != "resolved" or c["department"] != flow.expected[c["external_ref"]]
    ]
    if wrong:
        problems.append(f"{len(wrong)} cases not resolved by their department: {wrong[:5]}")
    repeated = await db.fetch(
        "SELECT case_id, action, count(*) FROM case_history "
        "WHERE action IN ('file', 'classify', 'remit', 'respond') "
        "GROUP BY case_id, action HAVING count(*) > 1"
    )
    if repeated:
        problems.append(f"{len(repeated)} lifecycle steps applied twice: {repeated[:3]}")
    emitted = await db.fetch(
        "SELECT event_type, count(*) AS n FROM outbox "
        "WHERE event_type IN ('CaseReceived', 'CaseClassified', 'CaseRemitted', 'CaseResolved') "
        "GROUP BY event_type"
    )
    for row in emitted:
        if row["n"] != len(refs):
            problems.append(f"{row['n']} {row['event_type']} events for {len(refs)} cases")

    # deadlines: one legal and one department clock per case, both stopped
    clocks = await db.fetch(
        "SELECT clock, count(*) AS n, count(*) FILTER (WHERE stopped_at IS NULL) AS open "
        "FROM deadline_clocks WHERE case_id = ANY($1) GROUP BY clock",
        [c["id"] for c in cases],
    )
    for row in clocks:
        if row["n"] != len(refs) or row["open"]:
            problems.append(
                f"{row['clock']} clocks: {row['n']} for {len(refs)}, open {row['open']}"
            )
    if len(clocks) != 2:
        problems.append(f"clock kinds found: {[r['clock'] for r in clocks]}")

    # notifier: each case's receipt queued once (the log is unique per event and recipient)
    receipts = await db.scalar(
        "SELECT count(DISTINCT case_id) FROM notifications WHERE event_type = 'CaseReceived' "
        "AND case_id = ANY($1)",
        [c["id"] for c in cases],
    )
    if receipts != len(refs):
        problems.append(f"receipts queued for {receipts} of {len(refs)} cases")

    # 3. every department queue got every case remitted to it (duplicates counted)
    deps = flow.departments
    not_delivered = [
        c["external_ref"]
        for c in cases
        if queue_name(c["department"] or "") not in deps.case_queue.get(c["id"], set())
    ]
    misdelivered = [cid for cid, queues in deps.case_queue.items() if len(queues) != 1]
    if not_delivered:
        problems.append(f"{len(not_delivered)} remitted cases never reached their department")
    if misdelivered:
        problems.append(f"{len(misdelivered)} cases reached more than one department queue")
    distinct_remitted = sum(len(c) for c in deps.remitted.values())
    if distinct_remitted != len(refs):
        problems.append(f"{distinct_remitted} distinct CaseRemitted event_ids for {len(refs)}")
    figures["department_duplicates"] = deps.duplicates()
    figures["department_deliveries"] = sum(sum(c.values()) for c in deps.remitted.values())

    # 311 follows its cases
    unresolved_311 = [c["id"] for c in cases if c["id"] not in flow.platform.resolved]
    if unresolved_311:
        problems.append(f"311 never heard CaseResolved for {len(unresolved_311)} cases")

    # 4. poison: every DLQ holds what it should, each with its reason; answers counted
    all_dlqs = [f"{q}.dlq" for q in (*SERVICE_QUEUES, *(queue_name(d) for d in deps.departments))]
    depths = await queue_depths(cluster.amqp_url, all_dlqs)
    figures["dlq"] = {k: v for k, v in depths.items() if v}
    for name in all_dlqs:
        want = expect.dlq.get(name, 0)
        if depths[name] != want:
            reasons = Counter(r for r, _ in await read_dlq(cluster.amqp_url, name))
            problems.append(
                f"{name}: {depths[name]} messages, expected {want}; reasons "
                f"{dict(reasons.most_common(4))}"
            )
    for name, parts in expect.reasons.items():
        if depths[name] != expect.dlq.get(name, 0):
            continue  # already reported (or not all there yet)
        found: Counter[str] = Counter()
        for reason, _ in await read_dlq(cluster.amqp_url, name):
            found[next((p for p in parts if p in reason), f"unexpected: {reason!r}")] += 1
        if found != parts:
            problems.append(f"{name}: reasons {dict(found)}, expected {dict(parts)}")
    if expect.rejected_311 - flow.platform.rejected:
        problems.append(
            f"{len(expect.rejected_311 - flow.platform.rejected)} wrong-schema submissions "
            "never answered with SubmissionRejected"
        )
    figures["submission_rejected"] = len(flow.platform.rejected & expect.rejected_311)
    for queue, ids in expect.rejected_department.items():
        lost = ids - deps.rejected.get(queue, set())
        if lost:
            problems.append(f"{queue}: {len(lost)} refused answers never sent back")
    figures["answers_refused"] = sum(len(v) for v in deps.rejected.values())

    # 5. every service still running
    if cluster.dead():
        problems.append(f"processes not running: {cluster.dead()}")

    # 6. the API counts the same
    async with httpx.AsyncClient(timeout=30) as http:
        for port in cluster.http_ports:
            answer = await http.get(
                f"http://127.0.0.1:{port}/api/v1/cases",
                params={"channel": "311", "limit": 1},
                headers={"Authorization": f"Bearer {STAFF_TOKEN}"},
            )
            if answer.status_code != 200:
                problems.append(f"GET /api/v1/cases on :{port}: {answer.status_code}")
            elif answer.json()["total"] != len(refs):
                problems.append(f"API total {answer.json()['total']} != {len(refs)} on :{port}")
    figures["publisher_retries"] = flow.publisher.retries + deps.publisher.retries
    figures["kills"] = dict(cluster.kills)
    return Verdict(figures, problems)
