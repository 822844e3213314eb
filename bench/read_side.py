"""Read-side benchmark: intake's pages and lists over years of cases.

Creates a fresh PostgreSQL database (dropped at the end unless ``--keep``) and RabbitMQ
vhost, migrates it with the code under test, seeds N cases (default 1,000,000) with set-based
SQL (``generate_series``): three years of filings in a realistic mix of kinds, channels,
states, departments, open and overdue cases, coordinates, three audit rows each. The secondary
indexes are dropped during the load and rebuilt after it (their definitions are read back from
the catalogue, so the bench works for any revision of the schema), then the tables are
vacuumed and analysed. It times the duplicate search a filing runs (this checkout's
``possible_duplicates``, in-process), then starts intake as its own process and times,
sequentially, ``--requests`` requests of each: every public page, the API list with each
filter, deep offset and cursor pages and the search, the console's inbox and search, Open311
``GET requests`` with filters, the agenda and ``/metrics``; then 20 concurrent
``/transparencia`` requests. Intake's RSS is sampled every 100 ms throughout. The last line
printed is one JSON object with every figure.

    .venv/bin/python bench/read_side.py [--cases 1000000] [--requests 20]
        [--project DIR]   # the code under test (default: this checkout), run with DIR/.venv
        [--keep]          # keep the seeded database; [--database NAME] measures it again

The server is ``DEFENSA311_BENCH_DATABASE_URL`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``); only the new (or named) database is touched.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]
import httpx

HERE = Path(__file__).resolve().parent.parent
SERVER = os.environ.get(
    "DEFENSA311_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
AMQP = os.environ.get("DEFENSA311_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
STAFF = "bench-staff-token-0123456789abcdef"
PLATFORM = "bench-311-token-0123456789abcdef"
ASEO = "bench-aseo-token-0123456789abcdef"
NOW_SQL = "now()"

# One statement: N cases. Filing instants are spread over three years; a case's age decides
# how far it got (old cases are mostly closed; a few are still open and overdue).
SEED_CASES = """
INSERT INTO cases (id, tracking_code, external_ref, channel, kind, category, description,
    citizen, notify, location, anonymous, state, department, matched_rule, received_at, due_at,
    department_due_at, remitted_at, resolved_at, closed_at, resolution, resolution_path,
    decision, inspector, return_count, flagged, updated_at, lat, lon)
SELECT md5('case' || i)::uuid::text,
       to_char(received, 'YYYY') || '-UUU-' || lpad(i::text, 7, '0'),
       CASE WHEN channel = '311' THEN '311-' || i END,
       channel, kind, category,
       (ARRAY['Hace dos semanas no pasa el camión de la basura por mi calle',
              'Hay un hueco enorme en la vía principal frente a la escuela',
              'El alumbrado público de la cuadra lleva un mes apagado',
              'Sugiero poner más bancas y sombra en el parque del barrio',
              'Ruido excesivo todas las noches en el local de la esquina',
              'El funcionario de la ventanilla me pidió dinero para agilizar el trámite',
              'Botan basura en el lote baldío junto al mercado municipal',
              'La acera está rota y los adultos mayores se caen',
              'Talaron árboles sin permiso en el área verde del corregimiento',
              'El drenaje se tapa cada vez que llueve y se inunda la calle'])[1 + i % 10]
         || '. Referencia ' || i || '.',
       CASE WHEN anonymous THEN NULL ELSE json_build_object(
           'full_name', (ARRAY['María Pérez', 'José Rodríguez', 'Ana Castillo', 'Luis González',
                               'Carmen Ábrego', 'Pedro Núñez'])[1 + i % 6] || ' ' || i,
           'id_number', (1 + i % 9) || '-' || (100 + i % 900) || '-' || (1000 + i % 9000),
           'phone', '+5076' || lpad((i % 10000000)::text, 7, '0'),
           'email', 'persona' || i || '@example.com') END,
       CASE WHEN anonymous THEN NULL
            ELSE json_build_object('email', 'persona' || i || '@example.com') END,
       json_build_object('district', 'Panamá', 'corregimiento',
           (ARRAY['Betania', 'Bella Vista', 'San Francisco', 'Juan Díaz', 'Pedregal'])[1 + i % 5],
           'address', 'Calle ' || (i % 120) || ', casa ' || (i % 60),
           'lat', 8.95 + (i % 1000) / 10000.0, 'lon', -79.55 + (i % 997) / 10000.0),
       anonymous, state,
       CASE WHEN state = 'remitted' OR path = 'department' THEN dept END,
       NULL, received, received + interval '42 days',
       CASE WHEN state = 'remitted' THEN received + interval '38 days' END,
       CASE WHEN state = 'remitted' OR path = 'department' THEN received + interval '3 days' END,
       resolved, CASE WHEN state = 'closed' THEN resolved + interval '1 day' END,
       CASE WHEN resolved IS NOT NULL THEN 'Atendido.' END,
       CASE WHEN resolved IS NOT NULL THEN path END, NULL, NULL, 0, false,
       coalesce(resolved, received),
       8.95 + (i % 1000) / 10000.0, -79.55 + (i % 997) / 10000.0
FROM (
    SELECT i, received, channel, kind, anonymous, dept,
           CASE kind WHEN 'queja' THEN 'Recolección de basura'
                     WHEN 'sugerencia' THEN 'Sugerencia'
                     ELSE (ARRAY['Calles y huecos', 'Alumbrado público', 'Ruido',
                                 'Corrupción de funcionarios'])[1 + i % 4] END AS category,
           CASE kind WHEN 'sugerencia' THEN 'meeting' WHEN 'queja' THEN 'inspection'
                     ELSE CASE WHEN i % 3 = 0 THEN 'inspection' ELSE 'department' END END AS path,
           CASE WHEN kind IS NULL AND state <> 'received' THEN 'classified'
                WHEN kind = 'sugerencia' AND state IN ('inspection', 'remitted') THEN 'on_agenda'
                WHEN kind = 'queja' AND state = 'remitted' THEN 'inspection'
                WHEN kind <> 'sugerencia' AND state = 'on_agenda' THEN 'inspection'
                ELSE state END AS state
    FROM (
        SELECT i, received, channel, kind,
               coalesce(anonymous AND kind = 'sugerencia', false) AS anonymous, dept,
               CASE
                   WHEN age > 60 THEN CASE WHEN i % 100 < 93 THEN 'closed'
                                           WHEN i % 100 < 96 THEN 'resolved'
                                           ELSE (ARRAY['inspection', 'remitted', 'on_agenda',
                                                       'classified'])[1 + i % 4] END
                   ELSE (ARRAY['received', 'classified', 'inspection', 'remitted', 'on_agenda',
                               'resolved', 'closed', 'closed'])[1 + i % 8] END AS state
        FROM (
            SELECT i,
                   {now} - (i::float / $1) * interval '1095 days'
                         - (i % 600) * interval '1 minute' AS received,
                   (i::float / $1) * 1095 AS age,
                   (ARRAY['311', '311', '311', '311', '311', 'presencial', 'presencial',
                          'presencial', 'web', 'web'])[1 + (i * 7) % 10] AS channel,
                   (ARRAY['queja', 'queja', 'queja', 'queja', 'queja', 'denuncia', 'denuncia',
                          'denuncia', 'sugerencia', 'sugerencia', 'sugerencia', 'queja',
                          'denuncia', 'queja', 'denuncia', 'queja', 'denuncia', 'queja',
                          'denuncia', NULL])[1 + (i * 13) % 20] AS kind,
                   i % 7 = 0 AS anonymous,
                   (ARRAY['aseo', 'vias', 'obras', 'ambiente', 'tesoreria', 'policia', 'salud',
                          'rrhh'])[1 + (i * 3) % 8] AS dept
            FROM generate_series(1, $1) AS i
        ) raw
    ) staged
) shaped
CROSS JOIN LATERAL (
    SELECT CASE WHEN shaped.state IN ('resolved', 'closed')
                THEN received + (2 + i % 55) * interval '1 day' + (i % 480) * interval '1 minute'
           END AS resolved
) outcome
""".replace("{now}", NOW_SQL)

# Three audit rows a case: filed, classified, and its last step.
SEED_HISTORY = """
INSERT INTO case_history (case_id, at, actor, action, from_state, to_state, details)
SELECT id, received_at, 'bench', 'file', NULL, 'received', NULL::json FROM cases
UNION ALL
SELECT id, received_at + interval '1 hour', 'router', 'classify', 'received', 'classified', NULL
FROM cases
UNION ALL
SELECT id, updated_at, 'staff:bench',
       CASE state WHEN 'closed' THEN 'close' WHEN 'resolved' THEN 'respond'
                  WHEN 'remitted' THEN 'remit' WHEN 'on_agenda' THEN 'add_to_agenda'
                  ELSE 'start_inspection' END,
       'classified', state, NULL
FROM cases
"""


def url_with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


class RssSampler:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def read(self) -> float:
        with open(f"/proc/{self.pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    async def _run(self) -> None:
        while True:
            with suppress(OSError):
                self.samples.append(self.read())
            await asyncio.sleep(0.1)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def peak_since(self, mark: int) -> float:
        return max(self.samples[mark:], default=0.0)


async def seed(dsn: str, n: int) -> dict[str, float]:
    conn = await asyncpg.connect(dsn)
    try:
        indexes = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
            "AND tablename IN ('cases', 'case_history') AND indexname NOT IN "
            "(SELECT conname FROM pg_constraint)"
        )
        for row in indexes:
            await conn.execute(f'DROP INDEX "{row["indexname"]}"')
        started = time.monotonic()
        await conn.execute("SET synchronous_commit = off")
        await conn.execute(SEED_CASES, n)
        cases_s = time.monotonic() - started
        started = time.monotonic()
        await conn.execute(SEED_HISTORY)
        history_s = time.monotonic() - started
        started = time.monotonic()
        await conn.execute("SET maintenance_work_mem = '256MB'")
        for row in indexes:
            await conn.execute(row["indexdef"])
        # What autovacuum does to a table after a load (PostgreSQL 13+ vacuums after
        # inserts): statistics, and the visibility map an index-only scan reads.
        await conn.execute("VACUUM (ANALYZE) cases, case_history")
        index_s = time.monotonic() - started
    finally:
        await conn.close()
    return {"cases_s": cases_s, "history_s": history_s, "indexes_s": index_s}


async def real_codes(dsn: str, count: int = 40) -> list[str]:
    """Give a few cases real tracking codes (check symbol) so pages can look them up."""
    sys.path.insert(0, str(HERE))
    from shared.tracking import new_tracking_code

    conn = await asyncpg.connect(dsn)
    try:
        ids = await conn.fetch("SELECT id FROM cases ORDER BY id LIMIT $1", count)
        codes = []
        for row in ids:
            code = new_tracking_code(2026)
            await conn.execute("UPDATE cases SET tracking_code = $1 WHERE id = $2", code, row["id"])
            codes.append(code)
        return codes
    finally:
        await conn.close()


async def duplicate_search(dsn: str, samples: int) -> dict[str, Any]:
    """Times the duplicate search a filing runs (``possible_duplicates``, this checkout's code)
    for ``samples`` new cases, each modelled on a random recent open case: the same category
    about 20 m away and its description reworded (so both the distance and the text prefilter
    find candidates). The new cases are not stored."""
    sys.path.insert(0, str(HERE))
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    from shared.cases.duplicates import possible_duplicates, record_candidates
    from shared.config import DuplicatePolicy
    from shared.db.models import CaseRow
    from shared.uow import UnitOfWork

    conn = await asyncpg.connect(dsn)
    try:
        models = await conn.fetch(
            "SELECT category, lat, lon, description, kind, channel FROM cases "
            "WHERE state IN ('received', 'classified', 'inspection', 'remitted', 'on_agenda') "
            "AND received_at > now() - interval '30 days' AND lat IS NOT NULL "
            "ORDER BY md5(id) LIMIT $1",
            samples,
        )
    finally:
        await conn.close()
    engine = create_async_engine(dsn.replace("postgresql://", "postgresql+asyncpg://", 1))
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    policy = DuplicatePolicy()
    times: list[float] = []
    # The filing's whole step (the router's): the search and storing what it found, in
    # the same run as the search alone, rolled back so every sample sees the same data.
    stored_times: list[float] = []
    found = 0
    try:
        for i, model in enumerate([*models[:1], *models]):  # the first one warms up
            words = model["description"].split(". Referencia")[0]
            new = CaseRow(
                id=str(uuid.uuid4()),
                tracking_code=f"BENCH-{i}",
                channel=model["channel"],
                kind=model["kind"],
                category=model["category"],
                description=f"Vecinos reportan: {words.lower()}, por favor atiendan",
                state="received",
                lat=model["lat"] + 0.00018,
                lon=model["lon"],
                received_at=datetime.now(UTC),
                due_at=datetime.now(UTC) + timedelta(days=42),
                updated_at=datetime.now(UTC),
                anonymous=False,
                return_count=0,
                reopen_count=0,
                flagged=False,
            )
            started = time.perf_counter()
            async with UnitOfWork(sessions) as uow:
                candidates = await possible_duplicates(uow, new, policy)
            elapsed = (time.perf_counter() - started) * 1000
            async with UnitOfWork(sessions) as uow:
                # Stored first (intake does, before the router searches), then rolled back.
                uow.session.add(new)
                await uow.session.flush()
                started = time.perf_counter()
                await record_candidates(uow, new, policy, datetime.now(UTC))
                await uow.session.flush()
                stored = (time.perf_counter() - started) * 1000
                await uow.session.rollback()
            if i > 0:
                times.append(elapsed)
                stored_times.append(stored)
                found += bool(candidates)
    finally:
        await engine.dispose()
    return {
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(percentile(times, 0.95), 1),
        "n": len(times),
        "with_candidates": found,
        "at_filing_p50_ms": round(statistics.median(stored_times), 1),
        "at_filing_p95_ms": round(percentile(stored_times, 0.95), 1),
    }


def rabbitmqctl(*args: str) -> None:
    for attempt in range(30):  # the CLI fails now and then on a busy node
        if subprocess.run(["rabbitmqctl", *args], capture_output=True).returncode == 0:
            return
        time.sleep(1 + attempt % 3)
    raise RuntimeError(f"rabbitmqctl {args[0]} failed")


def create_vhost() -> str:
    vhost = f"d311-readside-{secrets.token_hex(3)}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    return vhost


# Intake's HTTP app alone, without the broker: for a machine whose RabbitMQ is unavailable.
# The read side never publishes; /readyz would wait for the broker, so /healthz is polled.
HTTP_ONLY = """
import asyncio, os, uvicorn
from services.intake.app import service
from services.intake.http import create_app
from shared.runtime import Runtime
from shared.settings import load_settings

async def main():
    runtime = Runtime(load_settings(), [service()])
    app = create_app(runtime.deps)
    port = int(os.environ["DEFENSA311_HTTP_PORT"])
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            access_log=False)
    await uvicorn.Server(config).serve()

asyncio.run(main())
"""


def start_intake(
    project: Path, env: dict[str, str], log: Path, *, http_only: bool = False
) -> subprocess.Popen[bytes]:
    python = project / ".venv" / "bin" / "python"
    command = ["-c", HTTP_ONLY] if http_only else ["-m", "shared.cli", "run", "intake"]
    with log.open("wb") as sink:
        return subprocess.Popen(
            [str(python), *command],
            cwd=project,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


async def timed(
    http: httpx.AsyncClient, path: str, n: int, budget_s: float, **kwargs: Any
) -> dict[str, Any]:
    times: list[float] = []
    statuses: set[int] = set()
    size = 0
    first_ms = 0.0
    deadline = time.monotonic() + budget_s
    for i in range(n + 1):
        started = time.perf_counter()
        response = await http.get(path, **kwargs)
        elapsed = (time.perf_counter() - started) * 1000
        statuses.add(response.status_code)
        size = len(response.content)
        if i > 0 or n == 0:  # the first request warms the connection (and any cache)
            times.append(elapsed)
        else:
            first_ms = elapsed
        if time.monotonic() > deadline and len(times) >= 3:
            break
    return {
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(percentile(times, 0.95), 1),
        "n": len(times),
        "first_ms": round(first_ms, 1),
        "status": sorted(statuses),
        "bytes": size,
    }


async def measure(base: str, codes: list[str], n: int, args: argparse.Namespace) -> dict[str, Any]:
    staff = {"Authorization": f"Bearer {STAFF}"}
    aseo = {"Authorization": f"Bearer {ASEO}"}
    deep = args.cases // 2
    results: dict[str, Any] = {}
    budget = args.budget
    async with httpx.AsyncClient(base_url=base, timeout=600) as http:
        public: dict[str, tuple[str, dict[str, Any]]] = {
            "transparencia": ("/transparencia", {}),
            "transparencia_csv": ("/transparencia.csv", {}),
            "seguimiento": (f"/seguimiento/{codes[0]}", {}),
            "api_case_public": (f"/api/v1/cases/{codes[1]}", {}),
            "open311_services": ("/open311/v2/services.json", {}),
            "open311_request": (f"/open311/v2/requests/{codes[2]}.json", {}),
            "open311_requests_anonymous": ("/open311/v2/requests.json", {}),
        }
        staff_lists: dict[str, tuple[str, dict[str, Any]]] = {
            "api_cases": ("/api/v1/cases?limit=50", staff),
            "api_cases_state": ("/api/v1/cases?limit=50&state=received", staff),
            "api_cases_kind": ("/api/v1/cases?limit=50&kind=sugerencia", staff),
            "api_cases_channel": ("/api/v1/cases?limit=50&channel=web", staff),
            "api_cases_department": ("/api/v1/cases?limit=50&department=rrhh", staff),
            "api_cases_overdue": ("/api/v1/cases?limit=50&overdue=true", staff),
            "api_cases_not_overdue": ("/api/v1/cases?limit=50&overdue=false", staff),
            "api_cases_department_token": ("/api/v1/cases?limit=50", aseo),
            "api_cases_deep_offset": (f"/api/v1/cases?limit=50&offset={deep}", staff),
            "api_cases_search": ("/api/v1/cases?limit=50&q=mercado", staff),
            "api_cases_search_name": ("/api/v1/cases?limit=50&q=castillo%2012", staff),
            "api_cases_search_phone": ("/api/v1/cases?limit=50&q=6000-1234", staff),
            "api_cases_search_code": (f"/api/v1/cases?limit=50&q={codes[3][5:12]}", staff),
            "api_agenda": ("/api/v1/agenda", staff),
            "open311_requests_filtered": (
                f"/open311/v2/requests.json?status=open&service_code=queja-recoleccion-de-basura"
                f"&api_key={PLATFORM}",
                {},
            ),
            "open311_requests_page": (
                f"/open311/v2/requests.json?page=10&page_size=100&api_key={PLATFORM}",
                {},
            ),
            "metrics": ("/metrics", {}),
        }
        for name, (path, headers) in {**public, **staff_lists}.items():
            count = min(n, 8) if name == "open311_requests_anonymous" else n
            results[name] = await timed(http, path, count, budget, headers=headers)
            print(name, results[name], file=sys.stderr, flush=True)

        # Cursor pages: walk to the middle by following next_cursor from a deep offset's
        # last item (no cursor API before the read side existed: reported as absent).
        first = (await http.get("/api/v1/cases?limit=50", headers=staff)).json()
        cursor = first.get("next_cursor") if isinstance(first, dict) else None
        if cursor:
            page = (await http.get(f"/api/v1/cases?limit=200&offset={deep}", headers=staff)).json()
            deep_cursor = page.get("next_cursor")
            results["api_cases_deep_cursor"] = await timed(
                http, f"/api/v1/cases?limit=50&cursor={deep_cursor}", n, budget, headers=staff
            )
            print("api_cases_deep_cursor", results["api_cases_deep_cursor"], file=sys.stderr)

        # The console: signed in with the staff token.
        signed = await http.post("/consola/entrar", data={"token": STAFF}, follow_redirects=False)
        cookies = signed.cookies
        for name, path in {
            "consola_bandeja": "/consola",
            "consola_cerrados": "/consola?estado=closed",
            "consola_buscar": "/consola/buscar?q=mercado",
            "consola_buscar_nombre": "/consola/buscar?q=Ábrego%2024",
        }.items():
            http.cookies = cookies
            results[name] = await timed(http, path, n, budget)
            print(name, results[name], file=sys.stderr, flush=True)
    return results


async def concurrent_transparency(base: str, count: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, timeout=1200) as http:
        started = time.perf_counter()
        responses = await asyncio.gather(*(http.get("/transparencia") for _ in range(count)))
        wall = time.perf_counter() - started
    return {
        "requests": count,
        "wall_s": round(wall, 2),
        "status": sorted({r.status_code for r in responses}),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    project: Path = args.project
    name = args.database or f"d311_readside_{secrets.token_hex(3)}"
    if not args.database:
        admin = await asyncpg.connect(SERVER)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
    dsn = url_with_database(SERVER, name)
    vhost = args.vhost or ("/" if args.http_only else await asyncio.to_thread(create_vhost))
    amqp = AMQP.rstrip("/") + "/" + quote(vhost, safe="")
    port = 18000 + secrets.randbelow(2000)
    env = {
        **os.environ,
        "DEFENSA311_DATABASE_URL": dsn,
        "DEFENSA311_AMQP_URL": amqp,
        "DEFENSA311_HTTP_PORT": str(port),
        "DEFENSA311_API_TOKENS": f"staff={STAFF},platform311={PLATFORM},department:aseo={ASEO}",
        "DEFENSA311_LOG_LEVEL": "WARNING",
        "DEFENSA311_RATE_LIMIT_ENABLED": "false",
    }
    result: dict[str, Any] = {"cases": args.cases, "project": str(project)}
    intake: subprocess.Popen[bytes] | None = None
    try:
        python = project / ".venv" / "bin" / "python"
        await asyncio.to_thread(
            subprocess.run,
            [str(python), "-m", "shared.cli", "db", "upgrade"],
            cwd=project,
            env=env,
            check=True,
            capture_output=True,
        )
        if not args.database:
            started = time.monotonic()
            result["seed"] = {k: round(v, 1) for k, v in (await seed(dsn, args.cases)).items()}
            result["seed"]["total_s"] = round(time.monotonic() - started, 1)
            print("seeded", result["seed"], file=sys.stderr, flush=True)
        codes = await real_codes(dsn)
        result["duplicate_search"] = await duplicate_search(dsn, args.duplicates)
        print("duplicate_search", result["duplicate_search"], file=sys.stderr, flush=True)
        if args.duplicates_only:
            return result

        log = Path(f"/tmp/{name}-intake.log")
        intake = start_intake(project, env, log, http_only=args.http_only)
        ready_path = "/healthz" if args.http_only else "/readyz"
        sampler = RssSampler(intake.pid)
        sampler.start()
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=5) as probe:
            for _ in range(600):
                if intake.poll() is not None:
                    tail = await asyncio.to_thread(log.read_text)
                    raise RuntimeError("intake stopped:\n" + tail[-3000:])
                with suppress(httpx.HTTPError):
                    if (await probe.get(ready_path)).status_code == 200:
                        break
                await asyncio.sleep(0.5)
            else:
                raise RuntimeError("intake did not become ready")
        result["rss_mb_ready"] = round(sampler.read(), 1)
        result["endpoints"] = await measure(base, codes, args.requests, args)
        result["rss_mb_peak_sequential"] = round(sampler.peak_since(0), 1)
        mark = len(sampler.samples)
        # The figures' cache (if any) is warm now; a cold burst is what a crowd after a
        # quiet spell meets: wait it out when asked.
        if args.cold_wait:
            await asyncio.sleep(args.cold_wait)
        result["concurrent_transparencia"] = await concurrent_transparency(base, args.concurrent)
        await asyncio.sleep(0.5)
        result["concurrent_transparencia"]["rss_mb_peak"] = round(sampler.peak_since(mark), 1)
        result["rss_mb_peak"] = round(sampler.peak_since(0), 1)
        public = [
            "transparencia",
            "transparencia_csv",
            "seguimiento",
            "api_case_public",
            "open311_services",
            "open311_request",
            "open311_requests_anonymous",
        ]
        endpoints = result["endpoints"]
        result["public_p95_max_ms"] = max(endpoints[k]["p95_ms"] for k in public)
        result["staff_p95_max_ms"] = max(
            v["p95_ms"] for k, v in endpoints.items() if k not in public
        )
    finally:
        if intake is not None:
            intake.terminate()
            with suppress(subprocess.TimeoutExpired):
                intake.wait(timeout=20)
            if intake.poll() is None:
                intake.kill()
        if args.keep or args.database:
            print(f"database kept: {name}", file=sys.stderr)
        else:
            admin = await asyncpg.connect(SERVER)
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
        if not (args.vhost or args.http_only):
            with suppress(RuntimeError):
                await asyncio.to_thread(rabbitmqctl, "delete_vhost", vhost)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=20, help="timed requests per endpoint")
    parser.add_argument(
        "--budget", type=float, default=60.0, help="seconds per endpoint before stopping early"
    )
    parser.add_argument("--concurrent", type=int, default=20)
    parser.add_argument(
        "--cold-wait", type=float, default=0.0, help="seconds to wait before the burst"
    )
    parser.add_argument("--project", default=str(HERE), help="checkout whose intake is run")
    parser.add_argument(
        "--vhost", default="", help="an existing RabbitMQ vhost to use (default: a new one)"
    )
    parser.add_argument(
        "--http-only",
        action="store_true",
        help="run intake's HTTP app without the broker (no vhost is created)",
    )
    parser.add_argument(
        "--duplicates", type=int, default=100, help="new cases whose duplicate search is timed"
    )
    parser.add_argument(
        "--duplicates-only", action="store_true", help="time the duplicate search and stop"
    )
    parser.add_argument("--keep", action="store_true", help="keep the seeded database")
    parser.add_argument(
        "--database",
        default="",
        help="an already seeded database to measure (migrated, then kept; nothing is seeded)",
    )
    arguments = parser.parse_args()
    arguments.project = Path(arguments.project).resolve()
    print(json.dumps(asyncio.run(main(arguments)), ensure_ascii=False))
