"""The after-conversion policy (worker/office/policy.py): every result kind, every limit, with and without a spare;
and the error each failed result gives the caller (worker/office/faults.py).

Pure, so it is checked exhaustively here without LibreOffice; tests/integration/test_office.py shows the pool
carries each decision out on real offices.
"""

from __future__ import annotations

import itertools
import xmlrpc.client

import pytest

from worker.config import OfficeSettings
from worker.errors import Reason
from worker.office import RestartReason
from worker.office.faults import conversion_error
from worker.office.policy import NOTHING, SPARE_AT_RSS_FRACTION, Decision, Facts, Limits, Result, decide

MIB = 2**20
LIMITS = Limits(max_conversions=200, max_rss_bytes=1000 * MIB)  # spare lead: 200 // 10 = 20
LOW_RSS = 100 * MIB


def after(result: Result = Result.OK, conversions: int = 1, rss: int = LOW_RSS, building: bool = False) -> Decision:
    return decide(Facts(result, conversions, rss, building), LIMITS)


@pytest.mark.parametrize(("result", "reason"), [
    (Result.TIMEOUT, RestartReason.TIMEOUT),
    (Result.MEMORY_KILLED, RestartReason.MEMORY),
    (Result.KILLED, RestartReason.KILLED),
    (Result.CRASH, RestartReason.CRASH),
])
def test_a_lost_office_restarts_now_whatever_else_holds(result: Result, reason: RestartReason) -> None:
    for conversions, rss, building in itertools.product((0, 199, 200, 500), (0, LOW_RSS, 2000 * MIB), (False, True)):
        assert after(result, conversions, rss, building) == Decision(restart=reason)


def test_a_fault_on_a_healthy_office_changes_nothing_even_at_the_limits() -> None:
    for conversions, rss, building in itertools.product((0, 199, 200, 500), (0, 2000 * MIB), (False, True)):
        assert after(Result.FAULT, conversions, rss, building) is NOTHING


def test_an_ordinary_conversion_changes_nothing() -> None:
    assert after() is NOTHING
    assert after(conversions=179, rss=int(1000 * MIB * SPARE_AT_RSS_FRACTION)) is NOTHING  # both just below


def test_the_conversion_limit_restarts_now_spare_or_not() -> None:
    for building in (False, True):
        assert after(conversions=200, building=building) == Decision(restart=RestartReason.MAX_CONVERSIONS)
        assert after(conversions=201, building=building) == Decision(restart=RestartReason.MAX_CONVERSIONS)


def test_the_conversion_limit_wins_over_memory() -> None:
    assert after(conversions=200, rss=2000 * MIB) == Decision(restart=RestartReason.MAX_CONVERSIONS)


def test_memory_above_the_ceiling_restarts_now_spare_or_not() -> None:
    for building in (False, True):
        assert after(rss=1000 * MIB + 1, building=building) == Decision(restart=RestartReason.MEMORY)
    assert after(rss=1000 * MIB) == Decision(spare=RestartReason.MEMORY)  # at the ceiling: not above it


def test_a_spare_starts_a_lead_before_the_conversion_limit() -> None:
    assert LIMITS.spare_lead == 20
    assert after(conversions=180) == Decision(spare=RestartReason.MAX_CONVERSIONS)
    assert after(conversions=199) == Decision(spare=RestartReason.MAX_CONVERSIONS)
    assert after(conversions=180, rss=900 * MIB) == Decision(spare=RestartReason.MAX_CONVERSIONS)  # count first


def test_a_spare_starts_above_the_rss_fraction() -> None:
    assert after(rss=int(1000 * MIB * SPARE_AT_RSS_FRACTION) + 1) == Decision(spare=RestartReason.MEMORY)


def test_no_second_spare_while_one_is_building() -> None:
    assert after(conversions=190, building=True) is NOTHING
    assert after(rss=900 * MIB, building=True) is NOTHING


@pytest.mark.parametrize(("max_conversions", "lead"), [(1, 1), (5, 1), (10, 1), (19, 1), (20, 2), (200, 20),
                                                        (500, 50), (501, 50), (100_000, 50)])
def test_the_spare_lead_is_a_tenth_of_the_limit_between_1_and_50(max_conversions: int, lead: int) -> None:
    limits = Limits(max_conversions, 1000 * MIB)
    assert limits.spare_lead == lead
    assert decide(Facts(Result.OK, max_conversions - lead, 0, False), limits) == \
        Decision(spare=RestartReason.MAX_CONVERSIONS)
    if max_conversions - lead - 1 > 0:
        assert decide(Facts(Result.OK, max_conversions - lead - 1, 0, False), limits) is NOTHING


def test_a_limit_of_one_restarts_after_every_conversion() -> None:
    assert decide(Facts(Result.OK, 1, 0, False), Limits(1, 1000 * MIB)) == \
        Decision(restart=RestartReason.MAX_CONVERSIONS)


def test_every_result_kind_has_a_rule() -> None:
    decisions = {result: after(result) for result in Result}
    assert decisions[Result.OK] is NOTHING and decisions[Result.FAULT] is NOTHING
    restarts = {d.restart for r, d in decisions.items() if r not in (Result.OK, Result.FAULT)}
    assert restarts == {RestartReason.TIMEOUT, RestartReason.MEMORY, RestartReason.KILLED, RestartReason.CRASH}


@pytest.mark.parametrize(("result", "reason"), [
    (Result.TIMEOUT, Reason.CONVERSION_TIMEOUT),
    (Result.FAULT, Reason.CONVERSION_FAILED),
    (Result.MEMORY_KILLED, Reason.MEMORY_EXHAUSTED),
    (Result.KILLED, Reason.OFFICE_KILLED),
    (Result.CRASH, Reason.OFFICE_CRASHED),
])
def test_each_failure_reaches_the_caller_with_its_own_reason(result: Result, reason: Reason) -> None:
    """Poison counting (worker/job.py) depends on these: a kill from outside must never read as a crash."""
    cause: Exception = xmlrpc.client.Fault(1, "<class 'RuntimeError'>:export failed") \
        if result is Result.FAULT else ConnectionResetError("gone")
    error = conversion_error(result, cause, OfficeSettings())
    assert error.reason is reason
    assert error.message
