"""The picture report: window parsing, counting, rendering, the command line and /stats."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.__main__ import build_parser
from bot.__main__ import main as bot_main
from bot.app.handler import dispatch_command
from bot.core.commands import AdminCmd, Context
from bot.core.deps import Deps
from bot.core.events import Reason
from bot.core.personas import load_personas
from bot.core.settings import SHIPPED_PERSONAS, load_settings
from bot.core.texts import t
from bot.ops.report import (
    MAX_MESSAGE_CHARS,
    NO_PERSONA,
    format_json,
    format_text,
    parse_since,
)
from bot.ops.stats import handle_stats, stats_main
from bot.telegram.client import TelegramApi
from store import EventRecord, Store, open_store
from tests.fakes.telegram import TEST_TOKEN, FakeTelegram
from tests.reference_report import ImageEventRow, nearest_rank, summarize

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
WEEK_AGO = NOW - timedelta(days=7)
ADMIN = 42
STRANGER = 7

REQ, GEN, FAIL = "image_requested", "image_generated", "image_failed"


def fixed_now() -> datetime:
    return NOW


def sample_rows() -> list[ImageEventRow]:
    """alice: 3 presses, 2 pictures, 1 ComfyUI failure; max: 1 press refused as busy."""
    return [
        ImageEventRow(REQ, "alice"),
        ImageEventRow(REQ, "alice"),
        ImageEventRow(REQ, "max"),
        ImageEventRow(GEN, "alice", duration_ms=4000),
        ImageEventRow(FAIL, "max", reason="busy"),
        ImageEventRow(REQ, "alice"),
        ImageEventRow(GEN, "alice", duration_ms=6000),
        ImageEventRow(FAIL, "alice", reason="generation_error", duration_ms=120_000),
    ]


# parse_since


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", NOW - timedelta(minutes=30)),
        ("12h", NOW - timedelta(hours=12)),
        ("7d", NOW - timedelta(days=7)),
        ("2w", NOW - timedelta(weeks=2)),
        (" 7D ", NOW - timedelta(days=7)),
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
        ("2026-11-28", datetime(2026, 11, 28, tzinfo=UTC)),
    ],
)
def test_parse_since_reads_every_form(text: str, expected: datetime) -> None:
    assert parse_since(text, now=NOW) == expected


@pytest.mark.parametrize(
    "text",
    ["", "7", "d", "-7d", "0d", "7y", "1.5h", "7 d", "7d2h", "2026-13-01", "yesterday"],
)
def test_parse_since_refuses_other_text_in_one_line(text: str) -> None:
    with pytest.raises(ValueError, match="use 30m, 12h, 7d, 2w or a UTC date") as info:
        parse_since(text, now=NOW)
    assert repr(text) in str(info.value)
    assert "\n" not in str(info.value)


def test_parse_since_refuses_a_window_before_year_one_and_a_date_after_now() -> None:
    with pytest.raises(ValueError, match="bad window '999999w'"):
        parse_since("999999w", now=NOW)
    with pytest.raises(ValueError, match="window '2026-11-29' starts in the future"):
        parse_since("2026-11-29", now=NOW)


# summarize


def test_nearest_rank_picks_a_member_of_the_list() -> None:
    values = [50, 15, 40, 20, 35]  # unsorted on purpose
    assert nearest_rank(values, 50) == 35
    assert nearest_rank(values, 95) == 50
    assert nearest_rank(values, 30) == 20
    assert nearest_rank([7], 95) == 7
    assert nearest_rank([], 50) is None


def test_summarize_counts_presses_pictures_and_every_reason() -> None:
    summary = summarize(sample_rows(), since=WEEK_AGO, until=NOW)
    assert (summary.presses, summary.generated, summary.failed) == (4, 2, 2)
    assert list(summary.failures.items()) == [
        (Reason.NO_QUOTA, 0),
        (Reason.GENERATION_ERROR, 1),
        (Reason.SEND_ERROR, 0),
        (Reason.DISABLED, 0),
        (Reason.BUSY, 1),
        (Reason.CANCELLED, 0),
    ]
    assert summary.success_rate == 0.5
    # Only image_generated durations count: the 120 s failure is not a generation time.
    assert (summary.p50_ms, summary.p95_ms) == (4000, 6000)
    assert (summary.since, summary.until) == (WEEK_AGO, NOW)


def test_summarize_percentiles_are_nearest_rank_on_a_known_list() -> None:
    durations = [1900, 100, 1500, 300, 700, 1100, 200, 2000, 900, 1300]
    durations += [400, 1800, 500, 1700, 600, 1200, 800, 1600, 1000, 1400]
    rows = [ImageEventRow(GEN, "alice", duration_ms=ms) for ms in durations]
    summary = summarize(rows, since=WEEK_AGO, until=NOW)
    assert (summary.p50_ms, summary.p95_ms) == (1000, 1900)
    assert summary.success_rate == 1.0


def test_summarize_splits_by_persona_sorted_by_key() -> None:
    rows = [ImageEventRow(REQ, "vera"), ImageEventRow(FAIL, None, reason="disabled")]
    summary = summarize([*sample_rows(), *rows], since=WEEK_AGO, until=NOW)
    assert list(summary.personas) == [NO_PERSONA, "alice", "max", "vera"]
    alice = summary.personas["alice"]
    assert (alice.presses, alice.generated, alice.failed) == (3, 2, 1)
    assert alice.failures[Reason.GENERATION_ERROR] == 1
    assert alice.success_rate == pytest.approx(2 / 3)
    assert (alice.p50_ms, alice.p95_ms) == (4000, 6000)
    busy = summary.personas["max"]
    assert (busy.success_rate, busy.p50_ms, busy.failures[Reason.BUSY]) == (0.0, None, 1)
    assert summary.personas["vera"].success_rate is None
    assert summary.personas[NO_PERSONA].failures[Reason.DISABLED] == 1


def test_summarize_counts_an_unknown_reason_as_a_failure_of_no_listed_reason() -> None:
    summary = summarize([ImageEventRow(FAIL, "alice", reason="gremlins")], since=NOW, until=NOW)
    assert summary.failed == 1
    assert sum(summary.failures.values()) == 0
    lines = format_text(summary).splitlines()
    assert [line.split() for line in lines[9:11]] == [["cancelled", "0"], ["other", "1"]]


def test_summarize_without_any_event() -> None:
    summary = summarize([], since=WEEK_AGO, until=NOW)
    assert (summary.presses, summary.generated, summary.failed) == (0, 0, 0)
    assert list(summary.failures) == list(Reason)
    assert set(summary.failures.values()) == {0}
    assert (summary.success_rate, summary.p50_ms, summary.p95_ms) == (None, None, None)
    assert summary.personas == {}


# format_text / format_json


def test_format_text_is_an_aligned_table() -> None:
    text = format_text(summarize(sample_rows(), since=WEEK_AGO, until=NOW))
    assert text == "\n".join(
        [
            "Pictures, 2026-11-21 12:00 → 2026-11-28 12:00 UTC",
            "presses                 4",
            "generated               2",
            "failed                  2",
            "  no_quota              0",
            "  generation_error      1",
            "  send_error            0",
            "  disabled              0",
            "  busy                  1",
            "  cancelled             0",
            "success rate        50.0%",
            "generation success  66.7%",  # the busy press is a limit, not a fault
            "time p50            4.0 s",
            "time p95            6.0 s",
            "",
            "persona  presses  generated  failed  success rate    p50    p95",
            "alice          3          2       1         66.7%  4.0 s  6.0 s",
            "max            1          0       1          0.0%      —      —",
        ]
    )


def test_format_text_in_russian_and_for_an_empty_window() -> None:
    summary = summarize(sample_rows(), since=WEEK_AGO, until=NOW)
    assert format_text(summary, "ru").splitlines()[:2] == [
        "Картинки, 2026-11-21 12:00 → 2026-11-28 12:00 UTC",
        "нажатий                 4",
    ]
    empty = summarize([], since=WEEK_AGO, until=NOW)
    assert format_text(empty) == (
        "Pictures, 2026-11-21 12:00 → 2026-11-28 12:00 UTC\nNo presses in this window."
    )


def test_format_text_cuts_many_personas_to_one_telegram_message() -> None:
    rows = [ImageEventRow(REQ, f"persona-with-a-long-key-{i:04d}") for i in range(500)]
    text = format_text(summarize(rows, since=WEEK_AGO, until=NOW))
    lines = text.splitlines()
    assert len(text) <= MAX_MESSAGE_CHARS
    assert lines[-1] == "…"
    assert lines[16].startswith("persona-with-a-long-key-0000 ")
    assert len({len(line) for line in lines[15:-1]}) == 1  # header and rows align
    shown = [line.split()[0] for line in lines[16:-1]]
    assert shown == [f"persona-with-a-long-key-{i:04d}" for i in range(len(shown))]
    assert 10 < len(shown) < 500


def test_format_json_exact_document() -> None:
    document = format_json(summarize(sample_rows(), since=WEEK_AGO, until=NOW))
    no_reasons = dict.fromkeys([r.value for r in Reason], 0)
    expected = {
        "since": "2026-11-21T12:00:00.000+00:00",
        "until": "2026-11-28T12:00:00.000+00:00",
        "presses": 4,
        "generated": 2,
        "failed": 2,
        "failures": no_reasons | {"generation_error": 1, "busy": 1},
        "success_rate": 0.5,
        "generation_success_rate": 0.6667,
        "p50_ms": 4000,
        "p95_ms": 6000,
        "personas": {
            "alice": {
                "presses": 3,
                "generated": 2,
                "failed": 1,
                "failures": no_reasons | {"generation_error": 1},
                "success_rate": 0.6667,
                "generation_success_rate": 0.6667,
                "p50_ms": 4000,
                "p95_ms": 6000,
            },
            "max": {
                "presses": 1,
                "generated": 0,
                "failed": 1,
                "failures": no_reasons | {"busy": 1},
                "success_rate": 0.0,
                "generation_success_rate": None,
                "p50_ms": None,
                "p95_ms": None,
            },
        },
    }
    assert document == json.dumps(expected, ensure_ascii=False, indent=2)
    assert list(json.loads(document)["failures"]) == [
        "no_quota",
        "generation_error",
        "send_error",
        "disabled",
        "busy",
        "cancelled",
    ]


def test_format_json_without_data_has_the_same_keys_and_nulls() -> None:
    document = json.loads(format_json(summarize([], since=WEEK_AGO, until=NOW)))
    assert document["success_rate"] is None
    assert (document["p50_ms"], document["p95_ms"], document["personas"]) == (None, None, {})


# stats_main against a real database file


def fill(path: Path) -> None:
    """Three presses this week (two pictures, one no_quota) and one ten days ago."""
    store = open_store(path)
    events = [
        (NOW - timedelta(days=10), REQ, None, None),
        (NOW - timedelta(days=10), GEN, None, 9000),
        (NOW - timedelta(days=2), REQ, None, None),
        (NOW - timedelta(days=2), GEN, None, 3000),
        (NOW - timedelta(hours=1), REQ, None, None),
        (NOW - timedelta(hours=1), FAIL, "no_quota", None),
        (NOW - timedelta(minutes=5), REQ, None, None),
        (NOW - timedelta(minutes=4), GEN, None, 5000),
        (NOW - timedelta(minutes=3), "image_resent", None, None),
    ]
    for ts, event, reason, duration_ms in events:
        store.events.add(
            EventRecord(
                ts=ts,
                event=event,
                user_id=5,
                chat_id=5,
                persona="alice",
                reason=reason,
                duration_ms=duration_ms,
            )
        )
    store.close()


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "bot.db"
    fill(path)
    return path


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``python -m bot stats *argv*`` at :data:`NOW`."""
    code = stats_main(build_parser().parse_args(["stats", *argv]), now=fixed_now)
    out, err = capsys.readouterr()
    return code, out, err


def test_stats_main_prints_the_last_week_as_text(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["--database", str(database)], capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "Pictures, 2026-11-21 12:00 → 2026-11-28 12:00 UTC"
    assert [line.split() for line in lines[1:4]] == [
        ["presses", "3"],
        ["generated", "2"],
        ["failed", "1"],
    ]
    assert lines[10].split() == ["success", "rate", "66.7%"]
    assert lines[11].split() == ["generation", "success", "100.0%"]  # no_quota is no fault
    assert lines[12:14] == ["time p50             3.0 s", "time p95             5.0 s"]
    assert lines[-1] == "alice          3          2       1         66.7%  3.0 s  5.0 s"


def test_stats_main_json_and_since_filtering(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["--database", str(database), "--json"], capsys)
    week = json.loads(out)
    assert code == 0
    assert (week["since"], week["presses"], week["generated"]) == (
        "2026-11-21T12:00:00.000+00:00",
        3,
        2,
    )
    assert week["failures"]["no_quota"] == 1
    _, out, _ = run(["--database", str(database), "--json", "--since", "30d"], capsys)
    assert (json.loads(out)["presses"], json.loads(out)["p95_ms"]) == (4, 9000)
    _, out, _ = run(["--database", str(database), "--json", "--since", "2h"], capsys)
    assert (json.loads(out)["presses"], json.loads(out)["success_rate"]) == (2, 0.5)
    _, out, _ = run(["--database", str(database), "--json", "--since", "2026-11-28"], capsys)
    assert json.loads(out)["presses"] == 2


def test_stats_main_leaves_the_database_file_unchanged(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = hashlib.sha256(database.read_bytes()).hexdigest()
    assert run(["--database", str(database)], capsys)[0] == 0
    assert hashlib.sha256(database.read_bytes()).hexdigest() == before


def test_stats_main_reads_database_path_without_a_bot_token(
    database: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    (tmp_path / ".env").write_text(f"DATABASE_PATH={database}\n", encoding="utf-8")
    code, out, _ = run(["--json"], capsys)
    assert (code, json.loads(out)["presses"]) == (0, 3)


def test_stats_main_missing_database_is_one_line_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "data" / "bot.db"
    code, out, err = run(["--database", str(missing)], capsys)
    assert (code, out) == (2, "")
    assert err == f"stats: no database at {str(missing)!r}; set DATABASE_PATH or pass --database\n"
    assert not missing.exists()
    assert not missing.parent.exists()


def test_stats_main_default_path_is_data_bot_db(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_PATH", raising=False)
    code, _, err = run([], capsys)
    assert (code, err) == (
        2,
        "stats: no database at 'data/bot.db'; set DATABASE_PATH or pass --database\n",
    )
    assert not (tmp_path / "data").exists()


def test_stats_main_bad_since_is_one_line(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["--database", str(database), "--since", "lately"], capsys)
    assert (code, out) == (2, "")
    assert err == "stats: bad window 'lately'; use 30m, 12h, 7d, 2w or a UTC date like 2026-11-01\n"


def test_stats_main_unknown_option_is_argparse_usage_error(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = bot_main(["stats", "--database", str(database), "--days", "7"])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert "unrecognized arguments: --days 7" in err


def test_stats_main_refuses_a_file_that_is_not_the_bots_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = tmp_path / "notes.txt"
    garbage.write_text("not sqlite at all, just some notes\n" * 100, encoding="utf-8")
    code, _, err = run(["--database", str(garbage)], capsys)
    assert code == 2
    assert err.startswith("stats: cannot read the events: ")
    assert err.count("\n") == 1


# handle_stats through the fake Bot API


@pytest.fixture
def store() -> Iterator[Store]:
    store = open_store(":memory:")
    yield store
    store.close()


@pytest.fixture
async def deps(store: Store, telegram_api: TelegramApi) -> Deps:
    return Deps(
        api=telegram_api,
        store=store,
        personas=load_personas(SHIPPED_PERSONAS),
        settings=load_settings(env_file=None, telegram_bot_token=TEST_TOKEN, admin_user_ids="42"),
        llm=None,
        rng=random.Random(1),
        now=fixed_now,
    )


def stats_cmd(user_id: int, *args: str, language_code: str = "en") -> AdminCmd:
    ctx = Context(
        chat_id=user_id,
        chat_type="private",
        user_id=user_id,
        first_name="Admin",
        language_code=language_code,
        update_id=1,
    )
    return AdminCmd(ctx=ctx, name="stats", args=args)


def add_events(store: Store) -> None:
    store.events.add(EventRecord(ts=NOW - timedelta(days=10), event=REQ, persona="vera"))
    store.events.add(EventRecord(ts=NOW - timedelta(days=1), event=REQ, persona="alice"))
    store.events.add(
        EventRecord(ts=NOW - timedelta(days=1), event=GEN, persona="alice", duration_ms=2500)
    )


async def test_admin_gets_the_week_in_one_message(
    deps: Deps, store: Store, fake_telegram: FakeTelegram
) -> None:
    add_events(store)
    fake_telegram.user_says("x", user_id=ADMIN)
    await handle_stats(deps, stats_cmd(ADMIN))
    expected_rows = [ImageEventRow(REQ, "alice"), ImageEventRow(GEN, "alice", duration_ms=2500)]
    expected = summarize(expected_rows, since=WEEK_AGO, until=NOW)
    assert fake_telegram.texts_to(ADMIN) == [format_text(expected, "en")]
    # In a monospace block, so the table stays aligned in Telegram.
    [sent] = [r for r in fake_telegram.requests if r.method == "sendMessage"][-1:]
    assert sent.params["parse_mode"] == "HTML"
    assert str(sent.params["text"]).startswith("<pre>")


async def test_admin_window_argument_widens_the_report(
    deps: Deps, store: Store, fake_telegram: FakeTelegram
) -> None:
    add_events(store)
    fake_telegram.user_says("x", user_id=ADMIN)
    await handle_stats(deps, stats_cmd(ADMIN, "30d", language_code="ru"))
    (text,) = fake_telegram.texts_to(ADMIN)
    assert text.splitlines()[0] == "Картинки, 2026-10-29 12:00 → 2026-11-28 12:00 UTC"
    assert text.splitlines()[1].split() == ["нажатий", "2"]
    assert "время p50            2.5 с" in text  # seconds, in the admin's language
    assert text.splitlines()[-1].startswith("vera ")


@pytest.mark.parametrize("args", [("lately",), ("7d", "extra"), ("2026-12-01",)])
async def test_admin_bad_window_gets_the_usage_line(
    deps: Deps, fake_telegram: FakeTelegram, args: tuple[str, ...]
) -> None:
    fake_telegram.user_says("x", user_id=ADMIN)
    await handle_stats(deps, stats_cmd(ADMIN, *args))
    assert fake_telegram.texts_to(ADMIN) == ["Usage: /stats [30m | 12h | 7d | 2w | 2026-11-01]"]


async def test_non_admin_is_refused(deps: Deps, store: Store, fake_telegram: FakeTelegram) -> None:
    add_events(store)
    fake_telegram.user_says("x", user_id=STRANGER)
    await dispatch_command(deps, stats_cmd(STRANGER, language_code="ru"))
    assert fake_telegram.texts_to(STRANGER) == [t("admin_only", "ru")]
