"""The report's per-server section: counted by SQL, rendered by a pure function."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.__main__ import build_parser
from bot.ops.server_report import server_lines
from bot.ops.stats import stats_main
from store import NewJob, open_store
from store.events import EventRecord
from store.schema import _EVENTS_SERVER
from store.server_stats import _AT_RANK, _COUNT, _NEXT_SERVER, ServerCounts, server_counts
from tests.rows import deliver

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
WEEK_AGO = NOW - timedelta(days=7)

# job id: (server, event, reason, duration_ms)
JOBS: dict[str, tuple[str | None, str, str | None, int | None]] = {
    "j1": ("gpu1:8188", "image_generated", None, 4000),
    "j2": ("gpu1:8188", "image_generated", None, 2000),
    "j3": ("gpu1:8188", "image_generated", None, 9000),
    "j4": ("gpu1:8188", "image_failed", "generation_error", None),
    "j5": ("gpu2:8188", "image_generated", None, 3000),
    "j6": (None, "image_failed", "busy", None),  # never reached a server
}


def fill(path: Path, *, old: bool = False) -> None:
    store = open_store(path)
    ts = NOW - timedelta(days=30 if old else 1)
    for n, (job_id, (server, event, reason, duration_ms)) in enumerate(JOBS.items()):
        store.db["jobs"].insert(
            {
                "job_id": job_id, "prompt_id": f"p{n}", "user_id": 5, "chat_id": 5,
                "message_id": n, "persona_key": "alice", "state": "delivered",
                "quota_source": "balance", "quota_day": "2026-11-27", "server": server,
                "created_at": ts.isoformat(), "updated_at": ts.isoformat(),
            }
        )  # fmt: skip
        store.events.add(EventRecord(ts=ts, event="image_requested", job_id=job_id))
        record = EventRecord(
            ts=ts,
            event=event,
            job_id=job_id,
            reason=reason,
            duration_ms=duration_ms,
            server=server,
        )
        store.events.add(record)
    store.close()


def test_pictures_failures_and_percentiles_per_server(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    fill(path)
    with open_store(path) as store:
        rows = server_counts(store.db, since=WEEK_AGO, until=NOW)
    assert rows == [
        ServerCounts("gpu1:8188", generated=3, failed=1, p50_ms=4000, p95_ms=9000),
        ServerCounts("gpu2:8188", generated=1, failed=0, p50_ms=3000, p95_ms=3000),
        ServerCounts("-", generated=0, failed=1, p50_ms=None, p95_ms=None),
    ]


def test_a_database_without_the_server_indexes_counts_the_same_through_the_jobs(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bot.db"
    fill(path)
    with open_store(path) as store:
        indexed = server_counts(store.db, since=WEEK_AGO, until=NOW)
        store.db.execute("DROP INDEX events_finished_by_server")
        store.db.execute("UPDATE events_analytics SET server = NULL")  # only jobs know it
        assert server_counts(store.db, since=WEEK_AGO, until=NOW) == indexed


def test_the_report_reads_off_indexes_without_sorting(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    fill(path)
    window = [WEEK_AGO.isoformat(), NOW.isoformat()]
    with open_store(path) as store:
        for sql, params in [
            (_NEXT_SERVER, ["image_generated", ""]),
            (_COUNT, ["image_failed", "gpu1:8188", *window]),
            (_AT_RANK, ["gpu1:8188", *window, 1]),
        ]:
            plan = " ".join(
                r["detail"] for r in store.db.query(f"EXPLAIN QUERY PLAN {sql}", params)
            )
            assert "INDEX" in plan, plan
            assert "TEMP B-TREE" not in plan, plan


def test_settling_a_job_names_its_server_on_the_event(tmp_path: Path) -> None:
    with open_store(tmp_path / "bot.db") as store:
        for n, outcome in enumerate(["consume", "release"]):
            job_id = f"job-{n}"
            store.quota.grant(5, 1, now=NOW, free_images=0, ref=f"grant-{n}")
            new = NewJob(
                job_id=job_id,
                prompt_id=f"prompt-{n}",
                user_id=5,
                chat_id=5,
                message_id=n,
                persona_key="alice",
                language="ru",
            )
            store.quota.reserve(new, now=NOW, daily_limit=0)
            store.jobs.set_server(job_id, "gpu2:8188")
            if outcome == "consume":
                event = EventRecord(ts=NOW, event="image_generated", job_id=job_id)
                assert deliver(store, job_id, now=NOW, event=event)
            else:
                event = EventRecord(ts=NOW, event="image_failed", job_id=job_id, reason="x")
                assert store.quota.release(job_id, reason="x", detail="d", now=NOW, event=event)
        servers = [r["server"] for r in store.db.query("SELECT server FROM events_analytics")]
        assert servers == ["gpu2:8188", "gpu2:8188"]
        rows = server_counts(store.db, since=WEEK_AGO, until=NOW)
        assert rows == [ServerCounts("gpu2:8188", 1, 1, None, None)]


def test_the_migration_takes_the_server_of_older_events_from_their_jobs(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    fill(path)
    with open_store(path) as store:
        store.db.execute("UPDATE events_analytics SET server = NULL")  # as before 0007
        (backfill,) = [s for s in _EVENTS_SERVER.split(";") if s.strip().startswith("UPDATE")]
        store.db.execute(backfill)
        rows = store.db.query(
            "SELECT job_id, server FROM events_analytics WHERE event != 'image_requested'"
            " ORDER BY job_id"
        )
        assert {r["job_id"]: r["server"] for r in rows} == {
            job_id: server for job_id, (server, *_) in JOBS.items()
        }
        requested = store.db.query(
            "SELECT count(*) AS n FROM events_analytics WHERE server IS NOT NULL"
            " AND event = 'image_requested'"
        )
        assert next(iter(requested))["n"] == 0


def test_events_outside_the_window_are_not_counted(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    fill(path, old=True)
    with open_store(path) as store:
        assert server_counts(store.db, since=WEEK_AGO, until=NOW) == []


def test_the_section_is_left_out_when_no_job_reached_a_server() -> None:
    assert server_lines([]) == []
    assert server_lines([ServerCounts("-", 0, 2, None, None)]) == []


def test_the_section_in_english_and_russian() -> None:
    rows = [ServerCounts("gpu1:8188", 3, 1, 4000, 9000), ServerCounts("-", 0, 1, None, None)]
    assert server_lines(rows) == [
        "server     generated  failed    p50    p95",
        "gpu1:8188          3       1  4.0 s  9.0 s",
        "-                  0       1      —      —",
    ]
    assert server_lines(rows, "ru")[0].startswith("сервер")


def test_stats_command_appends_the_servers_as_text_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bot.db"
    fill(path)
    parser = build_parser()
    assert stats_main(parser.parse_args(["stats", "--database", str(path)]), now=lambda: NOW) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-3].startswith("gpu1:8188")
    argv = ["stats", "--json", "--database", str(path)]
    assert stats_main(parser.parse_args(argv), now=lambda: NOW) == 0
    document = json.loads(capsys.readouterr().out)
    assert [s["server"] for s in document["servers"]] == ["gpu1:8188", "gpu2:8188", "-"]
    assert document["servers"][0]["p95_ms"] == 9000
