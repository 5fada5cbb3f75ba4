"""The personas file: validation with one-line errors, and the lookup by key or name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.chat.handlers import fallback_line
from bot.core.personas import PersonasError, load_personas
from bot.core.settings import SHIPPED_PERSONAS
from bot.core.texts import t


def shipped() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SHIPPED_PERSONAS.read_text(encoding="utf-8"))
    return data


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "personas.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def test_the_shipped_file_is_valid_with_a_default_and_two_or_more_personas() -> None:
    book = load_personas(SHIPPED_PERSONAS)
    assert len(book.personas) >= 2
    assert book.default.key == shipped()["default"]


def test_image_config_by_key_or_name_lower_cased_else_default() -> None:
    book = load_personas(SHIPPED_PERSONAS)
    alice = book.get("alice")
    assert alice.image is not None
    assert book.image_config(alice) == alice.image
    vera = book.get("vera")  # ships without image settings of her own
    assert vera.image is None
    assert book.image_config(vera) == book.default_image


def test_image_config_found_by_name_when_the_key_differs(tmp_path: Path) -> None:
    data = shipped()
    data["personas"][1]["key"] = "renamed"
    data["personas"][1]["name"] = "Alice"  # now the name carries the image settings
    book = load_personas(write(tmp_path, data))
    assert book.image_config(book.get("renamed")).lora_filename == "max_v1.safetensors"


def test_unknown_stored_key_falls_back_to_the_default() -> None:
    book = load_personas(SHIPPED_PERSONAS)
    assert book.get("gone") is book.default
    assert book.get(None) is book.default


def test_every_lora_file_listed_once() -> None:
    book = load_personas(SHIPPED_PERSONAS)
    files = book.lora_files()
    assert len(files) == len(set(files))
    assert "alice_v1.safetensors" in files


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.update(default="nobody"), "default 'nobody' is not one of the persona keys"),
        (lambda d: d["personas"].append(dict(d["personas"][0])), "duplicate persona keys"),
        (
            lambda d: d["personas"][0].pop("system_prompt"),
            "personas.0.system_prompt: Field required",
        ),
        (lambda d: d["personas"][0].update(key="Has Space"), "personas.0.key"),
    ],
)
def test_invalid_files_are_refused_with_one_line(
    tmp_path: Path, mutate: Any, expected: str
) -> None:
    data = shipped()
    mutate(data)
    with pytest.raises(PersonasError) as caught:
        load_personas(write(tmp_path, data))
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_unreadable_and_broken_json(tmp_path: Path) -> None:
    with pytest.raises(PersonasError, match="cannot be read"):
        load_personas(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    with pytest.raises(PersonasError, match="not valid JSON"):
        load_personas(broken)


def test_the_fallback_line_follows_the_personas_gender_or_their_own_line() -> None:
    book = load_personas(SHIPPED_PERSONAS)
    alice, max_ = book.get("alice"), book.get("max")
    assert "задумалась" in fallback_line(alice, "ru")
    assert "задумался" in fallback_line(max_, "ru")
    assert fallback_line(alice, "en") == t("llm_fallback", "en")
    own = alice.model_copy(update={"fallback_line": "Ой, я отвлеклась на чайник."})
    assert fallback_line(own, "ru") == "Ой, я отвлеклась на чайник."
    assert book.texts.paysupport is not None


def test_a_rule_of_the_file_is_reported_without_pydantics_prefix(tmp_path: Path) -> None:
    data = shipped()
    data["personas"].append(dict(data["personas"][0]))
    path = write(tmp_path, data)
    with pytest.raises(PersonasError) as caught:
        load_personas(path)
    message = str(caught.value)
    assert "Value error" not in message
    assert message.endswith(": (top level): duplicate persona keys ['alice']")
