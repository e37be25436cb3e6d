"""One of each kind of object a user owns, made through the API, for the generated suites
(test_openapi_fuzz.py, test_isolation.py) to aim their ids at."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.api.test_exports import wait_job
from tests.api.test_files import attach
from tests.conftest import Server
from tests.support import Api


@dataclass
class Owned:
    api: Api
    thread_id: int
    user_message_id: int
    answer_id: int
    other_answer_id: int  # a second version of the answer, so versions and diffs have two sides
    attachment_id: int
    job_id: str

    @property
    def path_ids(self) -> dict[str, Any]:
        """Each path parameter name in the OpenAPI document, and the owner's object it names. A new
        route with a new `{name}` in its path needs its kind of object made here, and its entry."""
        assert self.api.user is not None
        return {
            "thread_id": self.thread_id,
            "message_id": self.answer_id,
            "attachment_id": self.attachment_id,
            "job_id": self.job_id,
            "user_id": self.api.user["id"],
        }

    @property
    def other_ids(self) -> dict[str, Any]:
        """Ids the owner's objects take in a query or a body, by parameter or field name."""
        return {"against": self.other_answer_id, "message_id": self.answer_id, "thread_id": self.thread_id}


def plain_user(server: Server) -> Api:
    """A new account without the admin role (the first account of a fresh server is an admin)."""
    api = server.api()
    if api.user and api.user["role"] == "admin":
        api.close()
        api = server.api()
    assert api.user and api.user["role"] == "user"
    return api


def make_owned(api: Api) -> Owned:
    """A thread with a question, two versions of its answer, a ready attachment and a finished export job."""
    thread = api.thread(title="Owned", system_prompt="Be brief.")
    first = api.send(thread["id"], "What is the plan?")
    user_message_id = first.events[0].data["user_message"]["id"]
    answer_id = first.last.data["message"]["id"]
    again = api.stream("POST", f"/api/convo/messages/{answer_id}/regenerate", json={})
    other_answer_id = again.last.data["message"]["id"]
    attachment = attach(api, thread["id"], "notes.txt", b"The plan: ship the fuzz suite on Tuesday.\n")
    started = api.post(f"/api/threads/{thread['id']}/export/jobs", json={"format": "md"})
    assert started.status_code == 202, started.text
    job = wait_job(api, started.json()["job_id"])
    assert job["status"] == "succeeded", job
    return Owned(api, thread["id"], user_message_id, answer_id, other_answer_id, attachment["id"], job["job_id"])
