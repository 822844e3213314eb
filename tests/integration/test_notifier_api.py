"""The notification log and staff tasks over HTTP (services/notifier/http.py),
on a notifier that really ran: real RabbitMQ, PostgreSQL and aiosmtpd."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from services.notifier.app import service
from shared.http import http_app
from tests.integration.test_notifier_service import citizen, harness

pytestmark = pytest.mark.connected

STAFF = {"Authorization": "Bearer tok-personal"}
SUPERVISOR = {"Authorization": "Bearer tok-supervision"}
PLATFORM = {"Authorization": "Bearer tok-311"}


async def test_log_and_tasks(amqp_url: str, pg_url: str, tmp_path: Path) -> None:
    async with harness(
        amqp_url,
        pg_url,
        tmp_path,
        sms_webhook_url=None,  # no SMS gateway: a phone-only citizen becomes a task
        api_tokens="staff=tok-personal,supervisor=tok-supervision,platform311=tok-311",
    ) as h:
        by_post = await h.file(
            kind="queja", citizen=citizen(), notify={"address": "Calle 50, casa 12, Bella Vista"}
        )
        by_phone = await h.file(kind="queja", citizen=citizen(), notify={"phone": "6123-4567"})
        refused = await h.file(
            kind="queja", citizen=citizen(), notify={"email": "rechazado@example.com"}
        )
        (post_task,) = await h.settled(by_post, 1)
        (phone_task,) = await h.settled(by_phone, 1)
        (failed,) = await h.settled(refused, 1)
        assert (post_task.status, phone_task.status, failed.status) == ("task", "task", "failed")

        # The notifier's routes as a process that runs only the notifier serves them.
        app = http_app(h.deps, [service()])
        assert app is not None
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            # who may read it
            assert (await client.get("/api/v1/notifications")).status_code == 401
            bad = {"Authorization": "Bearer nope"}
            assert (await client.get("/api/v1/tasks", headers=bad)).status_code == 401
            assert (await client.get("/api/v1/tasks", headers=PLATFORM)).status_code == 403

            # the log of one case: masked, with the failure's reason
            got = await client.get(
                "/api/v1/notifications",
                params={"case": refused.tracking_code.lower()},
                headers=SUPERVISOR,
            )
            assert got.status_code == 200
            (item,) = got.json()["items"]
            assert item["status"] == "failed"
            assert item["last_error"] == "smtp recipient refused (550)"
            assert item["recipient"] == "r***@e***.com"
            assert "rechazado@example.com" not in got.text

            failed_only = await client.get(
                "/api/v1/notifications", params={"status": "failed"}, headers=STAFF
            )
            assert [i["id"] for i in failed_only.json()["items"]] == [failed.id]
            wrong = await client.get(
                "/api/v1/notifications", params={"status": "lost"}, headers=STAFF
            )
            assert wrong.status_code == 422
            assert wrong.json()["detail"][0]["field"] == "status"
            assert (
                await client.get(
                    "/api/v1/notifications", params={"case": "nonsense"}, headers=STAFF
                )
            ).status_code == 422

            # the tasks staff must deliver, with what and where
            tasks = (await client.get("/api/v1/tasks", headers=STAFF)).json()["items"]
            by_id = {t["id"]: t for t in tasks}
            assert set(by_id) == {post_task.id, phone_task.id}
            post = by_id[post_task.id]
            assert post["deliver_to"] == {"address": "Calle 50, casa 12, Bella Vista"}
            assert by_post.tracking_code in post["message"]["text"]
            assert by_post.tracking_code in post["message"]["subject"]
            assert by_id[phone_task.id]["deliver_to"] == {"phone": "+50761234567"}
            assert by_id[phone_task.id]["last_error"] == (
                "no SMS gateway configured: notify by phone"
            )

            # marking one done: recorded in the history, gone from the open list, idempotent
            done = await client.post(f"/api/v1/tasks/{post_task.id}/done", headers=STAFF)
            assert done.status_code == 200
            assert done.json()["status"] == "done"
            again = await client.post(f"/api/v1/tasks/{post_task.id}/done", headers=STAFF)
            assert again.status_code == 200
            open_ids = [
                t["id"] for t in (await client.get("/api/v1/tasks", headers=STAFF)).json()["items"]
            ]
            assert open_ids == [phone_task.id]
            finished = await client.get("/api/v1/tasks", params={"status": "done"}, headers=STAFF)
            assert [t["id"] for t in finished.json()["items"]] == [post_task.id]
            notes = [r for r in await h.history(by_post) if r.action == "notification_delivered"]
            assert len(notes) == 1
            assert notes[0].actor == "staff"
            assert "Calle 50" not in json.dumps(notes[0].details)

            # only tasks can be marked done
            not_task = await client.post(f"/api/v1/tasks/{failed.id}/done", headers=STAFF)
            assert not_task.status_code == 404
            assert (
                await client.post("/api/v1/tasks/999999/done", headers=STAFF)
            ).status_code == 404
            unauthorised = await client.post(f"/api/v1/tasks/{phone_task.id}/done")
            assert unauthorised.status_code == 401
