"""Installed anywhere, run as a service: the wheel in a fresh venv, the systemd unit, the image.

The wheel is built from a copy of the sources and installed into a new venv outside the
clone; the installed ``persona-bot`` then runs from a folder that holds only ``.env``, so
the workflow template and the personas can only come from the package. The deployment
recipes in ``deploy/`` are linted (``systemd-analyze verify``, hadolint), and the exact
command each one runs starts the bot against the fakes and stops on SIGTERM.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
import trio
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from bot.app import STOP_GRACE_S
from bot.core.personas import load_personas
from bot.core.settings import SHIPPED_PERSONAS, unknown_names
from store import open_store
from tests.fakes.comfy import FakeComfy, PromptScript
from tests.fakes.telegram import TEST_TOKEN, FakeTelegram
from tests.processes import ROOT, START_TIMEOUT_S, STOP_TIMEOUT_S, running_bot, serve_fakes

pytestmark = pytest.mark.slow

DEPLOY = ROOT / "deploy"
MAX_EXPOSURE = 2.0  # systemd-analyze security: "OK" is below 4
RUNNER_BIN = Path(sys.executable).parent  # this venv's tools: hadolint, dumb-init


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path

    @property
    def bin(self) -> Path:
        return self.venv / "bin"


def _run(*argv: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [str(arg) for arg in argv], cwd=cwd, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"{shlex.join(map(str, argv))}: {done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The wheel, built offline from a copy of the sources, installed into a fresh venv."""
    base = tmp_path_factory.mktemp("install")
    source = base / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("bot", "comfy", "common", "store"):
        shutil.copytree(ROOT / package, source / package, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    dist = base / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "-w", dist, source)  # fmt: skip
    (wheel,) = dist.glob("persona_image_bot-*.whl")
    venv = base / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    _run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q",
         "--no-deps", "--no-index", wheel)  # fmt: skip
    # The dependencies come from this venv, added as a plain path: a path named in a .pth
    # file has its own .pth files ignored, so this venv's editable link to the clone stays
    # out and the fresh venv sees only the installed wheel of the bot.
    purelib = Path(
        _run(
            venv / "bin" / "python",
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ).strip()
    )
    (purelib / "runner_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return Installed(wheel=wheel, venv=venv)


def test_the_wheel_carries_everything_the_bot_needs_at_run_time(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    for needed in ("bot/core/personas.json", "comfy/workflows/sdxl_lora.json",
                   "bot/core/texts.py", "store/schema.py", "bot/__main__.py",
                   "bot/telegram/client.py", "bot/pictures/workers.py", "bot/ops/backup.py",
                   "common/backoff.py", "bot/core/env.example"):  # fmt: skip
        assert needed in names
    licenses = [name for name in names if name.endswith("LICENSE")]
    assert licenses, "LICENSE is not in the wheel"
    metadata = next(name for name in names if name.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(installed.wheel).read(metadata).decode()
    assert "License: MIT" in text or "License-Expression: MIT" in text
    for version in ("3.11", "3.12", "3.13"):
        assert f"Programming Language :: Python :: {version}" in text
    where = _run(
        installed.bin / "python", "-c", "import bot, comfy; print(bot.__file__)",
        cwd=installed.venv,
    )  # fmt: skip
    assert Path(where.strip()).is_relative_to(installed.venv)  # not the clone


def _bare_environment(path: str) -> dict[str, str]:
    """No setting of the bot: whatever it needs must come from .env or the recipe."""
    env = {k: v for k, v in os.environ.items() if k in {"HOME", "LANG", "LC_ALL", "TMPDIR"}}
    env["PATH"] = path
    env["PYTHONUNBUFFERED"] = "1"
    return env


async def _talk_draw_and_stop(
    command: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    dotenv: Path | None = None,
    while_running: Callable[[dict[str, str]], Awaitable[None]] | None = None,
) -> str:
    """Start *command*, chat, press for a picture, SIGTERM; its output, exit 0 asserted.
    *while_running* is called with the bot's environment once the picture is delivered.

    The settings that point at the fakes go into *dotenv* when given, else into the
    environment, as systemd's ``EnvironmentFile=`` and compose's ``env_file:`` put them.
    """
    telegram = FakeTelegram()
    comfy = FakeComfy(loras=tuple(load_personas(SHIPPED_PERSONAS).lora_files()))
    comfy.default_script = PromptScript(run_s=0.2, steps=2)
    async with trio.open_nursery() as nursery:
        settings = {"TELEGRAM_BOT_TOKEN": TEST_TOKEN, **await serve_fakes(nursery, telegram, comfy)}
        if dotenv is not None:
            lines = "".join(f"{key}={value}\n" for key, value in settings.items())
            await trio.Path(dotenv).write_text(lines)
        else:
            env = {**env, **settings}
        async with running_bot(env, command=command, cwd=cwd) as (process, output):
            with trio.fail_after(START_TIMEOUT_S):
                telegram.user_says("/start vera")  # a deep link, as a user would arrive
                await telegram.wait_for(lambda: len(telegram.sent) == 1, timeout_s=START_TIMEOUT_S)
                telegram.user_presses(telegram.sent[0].message_id, "look")
                await telegram.wait_for(lambda: any(s.kind == "photo" for s in telegram.sent))
                while b"image_generated" not in output:  # noqa: ASYNC110 (a pipe, no event)
                    await trio.sleep(0.05)
                if while_running is not None:
                    await while_running(env)
            process.send_signal(signal.SIGTERM)
            with trio.fail_after(STOP_TIMEOUT_S):
                await process.wait()
        nursery.cancel_scope.cancel()
    text = output.decode()
    assert process.returncode == 0, text
    assert len(comfy.submitted) == 1
    assert "bot_stopped" in text
    return text


async def test_the_installed_command_runs_from_a_folder_with_only_env(
    installed: Installed, tmp_path: Path
) -> None:
    workdir = tmp_path / "anywhere"
    workdir.mkdir()
    # The commented settings file comes with the package: no clone needed for it.
    example = _run(installed.bin / "persona-bot", "example-env", cwd=workdir)
    assert example == (DEPLOY.parent / ".env.example").read_text()
    env = _bare_environment(f"{installed.bin}:/usr/bin:/bin")
    await _talk_draw_and_stop(["persona-bot"], cwd=workdir, env=env, dotenv=workdir / ".env")
    assert sorted(p.name for p in workdir.iterdir()) == [".env", "data"]
    assert (workdir / "data" / "bot.db").is_file()


def _unit() -> dict[str, list[str]]:
    """The unit's directives, each with all its values (a key may repeat)."""
    directives: dict[str, list[str]] = {}
    for raw in (DEPLOY / "persona-bot.service").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            directives.setdefault(key, []).append(value)
    return directives


def test_the_systemd_unit_passes_systemd_analyze_and_holds_the_rules(
    installed: Installed, tmp_path: Path
) -> None:
    unit = _unit()
    assert unit["User"] == ["persona-bot"]
    assert unit["ProtectSystem"] == ["strict"]
    assert unit["Restart"] == ["on-failure"]
    assert float(unit["TimeoutStopSec"][0]) > STOP_GRACE_S
    assert unit["EnvironmentFile"] == ["/etc/persona-bot/bot.env"]
    database = Path(unit["Environment"][0].removeprefix("DATABASE_PATH="))
    assert unit["ReadWritePaths"] == [str(database.parent)]  # the data folder, nothing else
    assert unit["WorkingDirectory"] == [str(database.parent)]
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze is missing: apt-get install systemd"
    # Verified as shipped except ExecStart, which must name an executable that exists here.
    copy = tmp_path / "persona-bot.service"
    text = (DEPLOY / "persona-bot.service").read_text()
    exec_start = unit["ExecStart"][0]
    copy.write_text(
        text.replace(f"ExecStart={exec_start}", f"ExecStart={installed.bin / 'persona-bot'}")
    )
    done = subprocess.run(
        [analyze, "verify", "--man=no", str(copy)], capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
    # Hardened: systemd's own rating of what the service may do to the host, 2.0 or less.
    rated = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(copy)],
        capture_output=True,
        text=True,
        check=False,
    )
    exposure = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", rated.stdout)
    assert exposure is not None, rated.stdout + rated.stderr
    assert float(exposure[1]) <= MAX_EXPOSURE, rated.stdout


async def test_the_units_command_starts_the_bot_the_way_systemd_would(
    installed: Installed, tmp_path: Path
) -> None:
    unit = _unit()
    # The unit's paths, moved under tmp_path: /opt/persona-bot is the installed venv.
    relocate = {"/opt/persona-bot": str(installed.venv), "/var/lib/persona-bot": str(tmp_path)}

    def moved(value: str) -> str:
        for old, new in relocate.items():
            value = value.replace(old, new)
        return value

    state = Path(moved(unit["WorkingDirectory"][0]))
    env = _bare_environment("/usr/bin:/bin")  # systemd's PATH has no venv in it
    for assignment in unit["Environment"]:
        key, _, value = moved(assignment).partition("=")
        env[key] = value
    await _talk_draw_and_stop(shlex.split(moved(unit["ExecStart"][0])), cwd=state, env=env)
    assert (state / "bot.db").is_file()


def _dockerfile() -> dict[str, list[str]]:
    """Each instruction of the final stage with its arguments, continuation lines joined."""
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    final = text[text.rindex("\nFROM ") :]
    instructions: dict[str, list[str]] = {}
    for line in final.splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, rest = line.strip().partition(" ")
            instructions.setdefault(name, []).append(rest.strip())
    return instructions


def test_the_dockerfile_passes_hadolint_and_holds_the_rules() -> None:
    hadolint = shutil.which("hadolint", path=str(RUNNER_BIN)) or shutil.which("hadolint")
    assert hadolint is not None, "hadolint is missing: pip install -e '.[dev]' brings it"
    done = subprocess.run(
        [hadolint, str(DEPLOY / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
    text = (DEPLOY / "Dockerfile").read_text()
    # One base for both stages, named down to its Debian release; a digest may be passed.
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    assert base is not None
    assert re.fullmatch(r"python:3\.\d+-slim-[a-z]+", base.group(1))
    assert text.count("FROM ${PYTHON_IMAGE}") == 2
    image = _dockerfile()
    user = image["USER"][0].split(":")[0]
    assert user.isdigit()
    assert int(user) != 0
    assert image["STOPSIGNAL"] == ["SIGTERM"]
    assert json.loads(image["ENTRYPOINT"][0]) == ["dumb-init", "--"]
    assert "dumb-init==" in " ".join(image["RUN"])
    workdir = image["WORKDIR"][0]
    assert json.loads(image["VOLUME"][0]) == [workdir]
    assert f"DATABASE_PATH={workdir}/bot.db" in " ".join(image["ENV"])
    # Health: the listener on the container's loopback, asked by the health command.
    assert "METRICS_ADDRESS=127.0.0.1:9464" in " ".join(image["ENV"])
    [healthcheck] = image["HEALTHCHECK"]
    assert healthcheck.split("CMD", 1)[1].strip() == '["persona-bot", "health"]'
    assert "--start-period=60s" in healthcheck


async def test_the_images_command_starts_the_bot_and_stops_on_sigterm_through_the_init(
    installed: Installed, tmp_path: Path
) -> None:
    image = _dockerfile()
    command = json.loads(image["ENTRYPOINT"][0]) + json.loads(image["CMD"][0])
    workdir = image["WORKDIR"][0]
    env = _bare_environment(f"{installed.bin}:{RUNNER_BIN}:/usr/bin:/bin")
    env["DATABASE_PATH"] = str(tmp_path / "bot.db")  # the image's ENV, moved to tmp_path
    env["METRICS_ADDRESS"] = f"127.0.0.1:{_free_port()}"  # and its listener, on a free port
    assert command == ["dumb-init", "--", "persona-bot"]
    assert workdir == "/var/lib/persona-bot"
    healthcheck = json.loads(image["HEALTHCHECK"][0].split("CMD", 1)[1])

    async def docker_asks_health(bot_env: dict[str, str]) -> None:
        done = await trio.run_process(healthcheck, env=bot_env, capture_stdout=True, check=False)
        assert done.returncode == 0
        assert done.stdout.decode().startswith("ok: polling; Telegram answered")

    await _talk_draw_and_stop(command, cwd=tmp_path, env=env, while_running=docker_asks_health)
    assert (tmp_path / "bot.db").is_file()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_compose_runs_the_image_with_the_env_file_and_a_chosen_comfyui_image() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    bot = compose["services"]["bot"]
    assert bot["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert bot["env_file"] == ".env"
    assert bot["volumes"] == [f"bot-data:{_dockerfile()['WORKDIR'][0]}"]
    assert float(bot["stop_grace_period"].removesuffix("s")) > STOP_GRACE_S
    comfyui = compose["services"]["comfyui"]
    # The operator names it; unset, only `up` fails (on the placeholder), not exec or logs.
    assert comfyui["image"] == "${COMFY_IMAGE:-set-comfy-image-in-deploy-env}"
    assert bot["restart"] == "on-failure:5"  # a bad setting (exit 2) is not retried forever
    # Compose reads it from deploy/.env too, which the bot also gets: no typo warning.
    assert unknown_names(["COMFY_IMAGE"], where="deploy/.env") == []
    assert set(compose["volumes"]) == {"bot-data", "comfyui-models"}
    backup = compose["services"]["backup"]  # the same image and volume, a daily rotated copy
    assert (backup["build"], backup["env_file"]) == (bot["build"], bot["env_file"])
    assert backup["volumes"] == bot["volumes"]
    script = backup["command"][-1]
    assert "persona-bot backup --keep 7 /var/lib/persona-bot/backups" in script
    assert "sleep 86400" in script
    # The image's health check, in compose's words; the backup container has no listener.
    assert bot["healthcheck"]["test"] == ["CMD", "persona-bot", "health"]
    assert backup["healthcheck"] == {"disable": True}


def _ignored(path: str, patterns: list[str]) -> bool:
    """Is *path* (relative to the build context) left out by these .dockerignore lines?
    Docker's rules as far as this file uses them: the last matching line wins, ``!``
    re-includes, ``**/`` matches in any folder, and a folder's pattern covers its files."""
    left_out = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    for line in patterns:
        negate = line.startswith("!")
        pattern = line.removeprefix("!").rstrip("/")
        candidates = prefixes + (
            ["/".join(parts[n:]) for n in range(len(parts))] if pattern.startswith("**/") else []
        )
        if any(fnmatch.fnmatchcase(c, pattern.removeprefix("**/")) for c in candidates):
            left_out = not negate
    return left_out


def test_the_build_context_keeps_out_secrets_and_data_and_keeps_what_the_image_copies() -> None:
    patterns = [
        line.strip()
        for line in (DEPLOY.parent / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    text = (DEPLOY / "Dockerfile").read_text()
    copied = [
        source
        for line in text.splitlines()
        if line.startswith("COPY ") and "--from=" not in line
        for source in line.split()[1:-1]
    ]
    assert copied  # pyproject.toml, README.md, LICENSE and the packages
    for source in copied:
        assert not _ignored(source, patterns), source
        assert not _ignored(f"{source}/sub/module.py", patterns), source
    for secret in (".env", "deploy/.env", "data/bot.db", ".venv/bin/python", ".git/config"):
        assert _ignored(secret, patterns), secret


def test_the_backup_timer_and_its_service_pass_systemd_analyze_and_make_a_dated_copy(
    installed: Installed, tmp_path: Path
) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze is missing: apt-get install systemd"
    name = "persona-bot-backup.service"
    service = (DEPLOY / name).read_text()
    (exec_start,) = [line for line in service.splitlines() if line.startswith("ExecStart=")]
    command = shlex.split(exec_start.removeprefix("ExecStart="))
    assert command[:2] == ["/opt/persona-bot/bin/persona-bot", "backup"]
    units = tmp_path / "units"
    units.mkdir()
    (units / name).write_text(service.replace(command[0], str(installed.bin / "persona-bot")))
    shutil.copy(DEPLOY / "persona-bot-backup.timer", units)
    done = subprocess.run(
        [analyze, "verify", "--man=no", *sorted(str(p) for p in units.iterdir())],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
    rated = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(units / name)],
        capture_output=True,
        text=True,
        check=False,
    )
    exposure = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", rated.stdout)
    assert exposure is not None, rated.stdout + rated.stderr
    assert float(exposure[1]) <= MAX_EXPOSURE, rated.stdout
    # Its command, with /var/lib/persona-bot moved under tmp_path (systemd makes the
    # folders: StateDirectory=), writes one dated copy of the unit's database.
    state = tmp_path / "state"
    (state / "backups").mkdir(parents=True)
    with open_store(state / "bot.db"):
        pass
    moved = [part.replace("/var/lib/persona-bot", str(state)) for part in command]
    out = _run(installed.bin / "persona-bot", *moved[1:], cwd=state)
    assert "integrity ok" in out
    (copy,) = (state / "backups").iterdir()
    assert re.fullmatch(r"bot-\d{8}-\d{6}\.db", copy.name)


def test_the_images_constraints_pin_every_run_time_dependency_within_its_range() -> None:
    """deploy/constraints.txt: each dependency of the package, direct or not, pinned, and
    each pin allowed by every package here that requires it (pip is the venv's own)."""
    pins: dict[str, str] = {}
    for line in (DEPLOY / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    needed: set[str] = set()
    todo = ["persona-image-bot"]
    while todo:
        dist = metadata.distribution(todo.pop())
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
                continue
            name = canonicalize_name(requirement.name)
            if name == "pip":
                continue
            assert name in pins, f"{name} (required by {dist.metadata['Name']}) is not pinned"
            assert requirement.specifier.contains(pins[name], prereleases=True), (
                f"{name}=={pins[name]} does not satisfy {dist.metadata['Name']}: {requirement}"
            )
            if name not in needed:
                needed.add(name)
                todo.append(name)
    assert set(pins) == needed  # nothing pinned that nothing needs
    assert "-c /wheels/constraints.txt" in (DEPLOY / "Dockerfile").read_text()
