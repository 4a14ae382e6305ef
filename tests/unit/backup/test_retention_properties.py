"""Properties of the retention plan over random histories, time zones and rule sets."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from molibackup.retention import COMPLETED, PERIODS, Policy, Snapshot, plan

NOW = datetime(2027, 1, 3, 12, 0, tzinfo=UTC)  # a Sunday of ISO week 53 of 2026
ZONES = ["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu",
         "Pacific/Chatham", "America/St_Johns"]
RULES = ["keep_last", *(f"keep_{name}" for name, _ in PERIODS)]

# Histories over three years, dense around the DST changes and the turn of the year.
moments = st.one_of(
    st.integers(0, 3 * 365 * 24 * 60),
    st.integers(0, 72 * 60).map(lambda m: m + int((NOW - datetime(2026, 11, 1, tzinfo=UTC))
                                                  .total_seconds() // 60) - 36 * 60),
    st.integers(0, 14 * 24 * 60),
)
states = st.sampled_from([COMPLETED] * 6 + ["pending", "error"])


@st.composite
def histories(draw: st.DrawFn) -> list[Snapshot]:
    entries = draw(st.lists(st.tuples(moments, states, st.sampled_from(["vol-a", "vol-b"])),
                            max_size=60))
    return [Snapshot(f"snap-{i:03d}", volume, NOW - timedelta(minutes=minutes), state, "")
            for i, (minutes, state, volume) in enumerate(entries)]


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    rules = {name: draw(st.integers(1, 30)) for name in RULES if draw(st.booleans())}
    days = draw(st.one_of(st.none(), st.integers(1, 400)))
    if days is None and not rules:
        days = 30
    return Policy(retention_days=days, min_keep=draw(st.integers(1, 5)),
                  timezone=ZoneInfo(draw(st.sampled_from(ZONES))), **rules)


def kept_ids(snapshots: list[Snapshot], policy: Policy) -> set[str]:
    return {d.snapshot.snapshot_id for d in plan(snapshots, NOW, policy) if not d.delete}


def newest_completed(snapshots: list[Snapshot], volume: str, count: int) -> set[str]:
    completed = sorted((s for s in snapshots if s.volume_id == volume and s.state == COMPLETED),
                       key=lambda s: (s.start_time, s.snapshot_id), reverse=True)
    return {s.snapshot_id for s in completed[:count]}


@settings(max_examples=300)
@given(history=histories(), policy=policies())
def test_never_deletes_the_newest_completed_snapshots_of_min_keep(
    history: list[Snapshot], policy: Policy
) -> None:
    kept = kept_ids(history, policy)
    for volume in ("vol-a", "vol-b"):
        assert newest_completed(history, volume, policy.min_keep) <= kept
        assert newest_completed(history, volume, 1) <= kept


@settings(max_examples=300)
@given(history=histories(), policy=policies())
def test_pending_snapshots_are_never_deleted(history: list[Snapshot], policy: Policy) -> None:
    pending = {s.snapshot_id for s in history if s.state == "pending"}
    assert pending <= kept_ids(history, policy)


@settings(max_examples=300)
@given(history=histories(), policy=policies())
def test_planning_again_on_what_was_kept_deletes_nothing(
    history: list[Snapshot], policy: Policy
) -> None:
    kept = kept_ids(history, policy)
    survivors = [s for s in history if s.snapshot_id in kept]
    assert kept_ids(survivors, policy) == kept


@settings(max_examples=300)
@given(history=histories(), policy=policies(), rule=st.sampled_from([*RULES, "min_keep"]),
       more=st.integers(1, 10))
def test_raising_a_keep_count_never_deletes_more(
    history: list[Snapshot], policy: Policy, rule: str, more: int
) -> None:
    raised = dataclasses.replace(policy, **{rule: getattr(policy, rule) + more})
    assert kept_ids(history, policy) <= kept_ids(history, raised)


@settings(max_examples=300)
@given(history=histories(), policy=policies())
def test_the_rules_together_keep_the_union_of_what_each_keeps(
    history: list[Snapshot], policy: Policy
) -> None:
    alone = [dataclasses.replace(policy, retention_days=None,
                                 **{other: 0 for other in RULES if other != rule})
             for rule in RULES if getattr(policy, rule)]
    if policy.retention_days is not None:
        alone.append(dataclasses.replace(policy, **dict.fromkeys(RULES, 0)))
    union = set().union(*(kept_ids(history, single) for single in alone))
    assert kept_ids(history, policy) == union


@settings(max_examples=200)
@given(history=histories(), policy=policies())
def test_a_volume_without_a_new_snapshot_keeps_everything(
    history: list[Snapshot], policy: Policy
) -> None:
    decisions = plan(history, NOW, policy, protected_volumes=frozenset({"vol-a"}))
    assert not any(d.delete for d in decisions if d.snapshot.volume_id == "vol-a")


@settings(max_examples=200)
@given(history=histories(), policy=policies())
def test_every_snapshot_gets_one_decision_with_reasons(
    history: list[Snapshot], policy: Policy
) -> None:
    decisions = plan(history, NOW, policy)
    assert sorted(d.snapshot.snapshot_id for d in decisions) == sorted(
        s.snapshot_id for s in history)
    assert all(d.reasons for d in decisions)
