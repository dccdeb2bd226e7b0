"""Workflow steps delivered through the real endpoint: duplicates, tampering, failed pushes,
revocation, concurrent group members, the local worker over HTTP and the emulator."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import transaction
from django.test import Client, override_settings

from cloudtask import conf, signals
from cloudtask.backends.capture import CaptureBackend
from cloudtask.backends.local.worker import Worker
from cloudtask.exceptions import PushError
from cloudtask.models import Workflow, WorkflowStep
from cloudtask.testing import capture_tasks
from cloudtask.workflows import chain, get_workflow, group, revoke_workflow
from tests import tasks
from tests.support.emulator import Emulator, wait_for
from tests.support.worker import drain

pytestmark = pytest.mark.django_db(transaction=True)


def called(name: str) -> list[Any]:
    return [value for called, value in tasks.calls if called == name]


def step(handle: Any, key: str) -> WorkflowStep:
    return WorkflowStep.objects.get(workflow_id=handle.id, key=key)


def test_nothing_is_stored_or_pushed_inside_a_rolled_back_transaction() -> None:
    def delay_then_fail() -> None:
        with transaction.atomic():
            (tasks.add.s(a=1, b=1) | tasks.add.s(b=1)).delay()
            raise RuntimeError("rolled back")

    with capture_tasks() as captured, pytest.raises(RuntimeError):
        delay_then_fail()
    assert not captured
    assert not Workflow.objects.exists()


def test_first_steps_are_pushed_when_the_transaction_commits() -> None:
    with capture_tasks() as captured:
        with transaction.atomic():
            handle = group(tasks.add.s(a=1, b=1), tasks.add.s(a=2, b=2)).delay()
            assert not captured
        assert [c.kwargs for c in captured] == [{"a": 1, "b": 1}, {"a": 2, "b": 2}]
        assert {c.call_id for c in captured} == {s.call_id for s in handle.steps()}


def test_a_duplicate_delivery_of_each_kind_of_step_runs_and_pushes_nothing() -> None:
    flow = chain(group(tasks.add.s(a=1, b=1), tasks.add.s(a=2, b=2)), tasks.total.s())
    flow = flow.on_error(tasks.report_error.s())
    with capture_tasks() as captured:
        handle = flow.delay()
        first, second = captured
        assert first.run().status_code == 200
        assert first.run().json()["status"] == "skipped"  # a group member, again
        assert second.run().status_code == 200
        assert len(captured) == 3  # the chord body, once
        body = captured[2]
        assert body.run().json()["result"] == 6
        again = body.run()
        assert (again.status_code, again.json()["reason"]) == (200, "duplicate")
        assert len(captured) == 3
    assert called("total") == [[2, 4]]
    assert handle.result() == 6
    assert step(handle, "0.0.0").attempts == 1


def test_a_duplicate_delivery_of_a_failed_step_pushes_its_error_callback_once() -> None:
    flow = chain(tasks.fails_for_good.s(7), tasks.add.s(b=1)).on_error(tasks.report_error.s())
    with capture_tasks() as captured:
        handle = flow.delay()
        failing = captured[0]
        assert failing.run().status_code == 200  # Reject: failed for good, not retried
        assert failing.run().json()["reason"] == "duplicate"
        assert [c.task.name for c in captured] == [
            "tests.tasks.fails_for_good",
            "tests.tasks.report_error",
        ]
        captured.run_all()
        captured.run_all()
    [report] = called("report_error")
    assert report["original_task_id"] == step(handle, "0.0").call_id
    assert report["error"] == "Reject: refused (7,)"
    assert report["payload"]["args"] == [7]
    assert handle.status == "failed"
    assert step(handle, "0.1").status == "skipped"


def test_a_tampered_step_body_is_refused() -> None:
    with capture_tasks() as captured:
        (tasks.add.s(a=1, b=1) | tasks.add.s(b=1)).delay()
    captured_request = captured[0].http_request
    data = json.loads(captured_request.body)
    data["workflow"][1] = "0.1"  # claim to be the second step
    headers = {k: v for k, v in captured_request.headers.items() if k != "Content-Type"}
    response = Client().post(
        "/_tasks/", json.dumps(data), content_type="application/json", headers=headers
    )
    assert response.status_code == 403
    assert WorkflowStep.objects.get(key="0.1").status == "pending"


def test_a_successor_push_that_fails_answers_500_and_the_redelivery_pushes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with capture_tasks() as captured:
        handle = (tasks.add.s(a=1, b=1) | tasks.add.s(b=10)).delay()
        real_push = CaptureBackend.push
        failures = iter([PushError("the queue is unreachable")])

        def push_failing_once(self: CaptureBackend, message: Any) -> str:
            error = next(failures, None)
            if error is not None:
                raise error
            return real_push(self, message)

        monkeypatch.setattr(CaptureBackend, "push", push_failing_once)
        first = captured[0]
        assert first.run().status_code == 500
        assert len(captured) == 1
        assert step(handle, "0.0").status == "succeeded"  # the result is kept
        assert first.run().json()["reason"] == "duplicate"  # Cloud Tasks delivers again
        assert len(captured) == 2
        captured.run_all()
    assert handle.result() == 12


def test_revoked_before_any_step_ran_runs_nothing() -> None:
    with capture_tasks() as captured:
        handle = group(tasks.passes_on.s(1), tasks.passes_on.s(2)).delay()
        assert handle.revoke() is True
        assert handle.revoke() is False  # ended already
        answers = captured.run_all()
    assert [a.json()["reason"] for a in answers] == ["revoked", "revoked"]
    assert called("passes_on") == []
    assert {s.status for s in handle.steps()} == {"revoked"}


def test_revoked_between_steps_runs_nothing_after() -> None:
    with capture_tasks() as captured:
        handle = (tasks.passes_on.s(1) | tasks.passes_on.s() | tasks.passes_on.s()).delay()
        captured[0].run()
        assert revoke_workflow(handle.id) is True
        captured.run_all()
    assert called("passes_on") == [1]
    assert [s.status for s in handle.steps()] == ["succeeded", "revoked", "revoked"]
    assert get_workflow(handle.id).status == "revoked"


def test_revoked_while_a_step_runs_keeps_its_result_and_starts_nothing() -> None:
    def revoke_on_start(sender: Any, call_id: str, **kwargs: Any) -> None:
        revoke_workflow(call_id)  # by a step's call id, as for a revocable call

    with capture_tasks() as captured:
        handle = (tasks.passes_on.s(0) | tasks.passes_on.s()).delay()
        signals.task_started.connect(revoke_on_start)
        try:
            captured[0].run()
        finally:
            signals.task_started.disconnect(revoke_on_start)
        assert len(captured) == 1
    first, second = handle.steps()
    assert (first.status, first.result) == ("succeeded", 0)  # falsy, kept
    assert second.status == "revoked"
    assert handle.status == "revoked"


@pytest.mark.slow
def test_the_local_worker_runs_a_chord_over_http(static_url: None, live_server: Any) -> None:
    local = {"BACKEND": conf.LOCAL_BACKEND, "URL": live_server.url + "/_tasks/"}
    with override_settings(CLOUDTASK=local):
        flow = tasks.add.s(a=4, b=5) | group(tasks.add.s(b=10), tasks.add.s(b=0)) | tasks.total.s()
        handle = flow.delay()
        # One delivery at a time: live_server shares this thread's in-memory SQLite
        # connection, so the worker must not write while the server runs a step.
        drain(Worker(poll_interval=0.05, concurrency=1))
    assert handle.result() == 28


@pytest.mark.slow
def test_the_emulator_delivers_a_chain_with_the_real_client(
    emulator: Emulator, task_endpoint: str
) -> None:
    with override_settings(CLOUDTASK=emulator.settings(URL=task_endpoint)):
        handle = (tasks.add.s(a=4, b=5) | tasks.add.s(b=10)).delay()
        assert wait_for(lambda: handle.status != "running", timeout=20)
    assert handle.result() == 19
    names = [request.task.name for request in emulator.created()]
    assert len(names) == 2
    assert all("-wf-" in name for name in names)  # ids derived from workflow and step


def test_a_revocable_call_is_revoked_by_its_call_id() -> None:
    with capture_tasks() as captured:
        handle = tasks.passes_on(5).delay(revocable=True)
        kept = tasks.passes_on(6).schedule(countdown=60, revocable=True)
        assert revoke_workflow(handle.call_id) is True
        answers = captured.run_all()
    assert [c.name for c in captured] == [handle.name, kept.name]
    assert [a.json()["status"] for a in answers] == ["skipped", "success"]
    assert called("passes_on") == [6]


def test_revocable_refuses_what_it_cannot_keep() -> None:
    with pytest.raises(TypeError, match="cannot be combined with name="):
        tasks.passes_on(5).delay(revocable=True, name="nightly")
    call = tasks.passes_on(5)
    call.url = "https://elsewhere.example.com/_tasks/"
    with pytest.raises(TypeError, match="task's own url"):
        call.delay(revocable=True)


def test_a_step_retrying_itself_stays_the_same_step() -> None:
    with capture_tasks() as captured:
        handle = (tasks.retries_itself.s(countdown=0) | tasks.passes_on.s()).delay()
        captured.run_all()
    # Two copies pushed by request.retry(), each carrying the step, then max_retries=2 ends it
    # (and the task's own on_failure is pushed, as for any call).
    attempts = [c for c in captured if c.task.name == "tests.tasks.retries_itself"]
    assert len(attempts) == 3
    assert {json.loads(c.http_request.body)["workflow"][1] for c in attempts} == {"0.0"}
    assert [c.task.name for c in captured if c not in attempts] == ["tests.tasks.record_failure"]
    first = handle.steps()[0]
    assert (first.status, first.attempts) == ("failed", 3)
    assert handle.status == "failed"
    assert called("passes_on") == []
