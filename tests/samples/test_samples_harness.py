"""Every sample's orchestration logic, run in the in-process harness (no broker, timers instant)."""

from __future__ import annotations

import fan_out_fan_in
import hello_sequence
import human_interaction
import large_payloads
import middleware
import monitor
import retries_compensation
import sub_orchestrations

from dtf_sb import OrchestrationStatus
from dtf_sb.testing.harness import run_orchestration


def test_hello_sequence() -> None:
    result = run_orchestration(
        hello_sequence.hello_sequence, ["Tokyo", "Seattle"], activities=[hello_sequence.say_hello]
    )
    assert result.status == OrchestrationStatus.COMPLETED
    assert result.output == ["Hello Tokyo!", "Hello Seattle!"]


def test_fan_out_fan_in_counts_every_line() -> None:
    result = run_orchestration(
        fan_out_fan_in.word_count, fan_out_fan_in.TEXT, activities=[fan_out_fan_in.count_words]
    )
    assert result.output == {"lines": 50, "words": 50 * 10}


def test_human_interaction_approved_and_timed_out() -> None:
    activities = [human_interaction.request_approval, human_interaction.escalate]
    request = {"id": "PO-1", "approver": "ana", "timeout": 60}
    approved = run_orchestration(
        human_interaction.approval_workflow,
        request,
        activities=activities,
        events=[(1, "approval", {"approved": True, "by": "ana"})],
    )
    assert approved.output == "request PO-1 approved by ana"
    timed_out = run_orchestration(human_interaction.approval_workflow, request, activities=activities)
    assert timed_out.output == "escalated PO-1 to the manager"


def test_monitor_continues_as_new_until_done() -> None:
    result = run_orchestration(
        monitor.monitor_job, {"job": "j", "checks": 0, "interval": 5}, activities=[monitor.check_job]
    )
    assert result.output == {"job": "j", "checks": 4, "status": "done"}
    assert len(result.generations) == 4


def test_sub_orchestrations_sum_children() -> None:
    result = run_orchestration(
        sub_orchestrations.process_batch,
        sub_orchestrations.ORDERS,
        sub_orchestrators=[sub_orchestrations.process_order],
        activities=[sub_orchestrations.reserve_stock, sub_orchestrations.charge],
        instance_id="batch",
    )
    assert result.output == {"orders": 4, "revenue": 10 * (1 + 2 + 3 + 4)}
    assert {f"batch-o{i}" for i in range(4)} <= set(result.instances)


def test_retries_then_compensation() -> None:
    rc = retries_compensation
    activities = [rc.book_flight, rc.book_hotel, rc.book_car, rc.cancel]
    rc._attempts.clear()
    failed = run_orchestration(
        rc.book_trip, {"id": "t1", "city": "Lisbon", "car_sold_out": True}, activities=activities
    )
    assert failed.output == {
        "booked": [],
        "compensated": ["cancelled hotel in Lisbon", "cancelled flight for t1"],
        "reason": "no cars left in Lisbon",
    }
    assert rc._attempts["t1"] == 3  # two transient failures retried, the non-retriable one was not
    ok = run_orchestration(rc.book_trip, {"id": "t2", "city": "Porto"}, activities=activities)
    assert ok.output["booked"] == ["flight for t2", "hotel in Porto", "car in Porto"]


def test_large_payloads_round_trip() -> None:
    lp = large_payloads
    result = run_orchestration(lp.build_reports, [200_000], activities=[lp.make_report, lp.digest])
    assert result.output["sizes"] == [200_000]
    assert result.output["digests"] == [lp.digest(lp.make_report(200_000))]


def test_middleware_sample_orchestration() -> None:
    result = run_orchestration(middleware.doubling, 5, activities=[middleware.double])
    assert result.output == 20
