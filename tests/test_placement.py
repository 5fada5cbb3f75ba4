"""The placement rule: which ComfyUI server draws a job (plain values in, a verdict out)."""

from __future__ import annotations

from bot.pictures.placement import Placement, ServerView, Verdict, place
from bot.pictures.servers import model_needs

NEEDS = ("sd_xl_base_1.0.safetensors", "alice_v1.safetensors")
EVERYTHING = frozenset(NEEDS)
NO_LORA = frozenset(NEEDS[:1])


def view(name: str, **fields: object) -> ServerView:
    values: dict[str, object] = {"healthy": True, "slots": 2, "busy": 0, "models": EVERYTHING}
    values.update(fields)
    return ServerView(name=name, **values)  # type: ignore[arg-type]


def test_the_only_server_with_the_persona_s_lora_gets_the_job() -> None:
    servers = [view("a", models=NO_LORA), view("b")]
    assert place(servers, NEEDS) == Placement(Verdict.CHOSEN, server="b")


def test_the_least_loaded_capable_server_wins_counting_comfyui_s_own_queue() -> None:
    servers = [view("a", busy=1), view("b", busy=0, queue_remaining=3), view("c", busy=0)]
    assert place(servers, NEEDS).server == "c"
    # ComfyUI's queue includes ours: one job of ours queued there is not counted twice
    servers = [view("a", busy=1, queue_remaining=1), view("b", busy=0, queue_remaining=2)]
    assert place(servers, NEEDS).server == "a"


def test_equal_load_goes_to_the_larger_server_then_the_first_listed() -> None:
    servers = [view("a", busy=1, slots=2), view("b", busy=1, slots=4)]
    assert place(servers, NEEDS).server == "b"
    assert place([view("a"), view("b")], NEEDS).server == "a"


def test_full_capable_servers_make_the_job_wait_in_the_bot_even_if_others_are_free() -> None:
    servers = [view("a", busy=2), view("b", models=NO_LORA)]
    assert place(servers, NEEDS) == Placement(Verdict.WAIT_FOR_SLOT)


def test_no_healthy_server_is_a_wait_for_one_not_a_refusal() -> None:
    servers = [view("a", healthy=False), view("b", healthy=False, models=NO_LORA)]
    assert place(servers, NEEDS) == Placement(Verdict.WAIT_FOR_SERVER)
    assert place([], NEEDS) == Placement(Verdict.WAIT_FOR_SERVER)


def test_a_file_no_healthy_server_has_is_named_at_once() -> None:
    servers = [view("a", models=NO_LORA), view("b", models=frozenset()), view("c", healthy=False)]
    assert place(servers, NEEDS) == Placement(Verdict.MISSING, missing=("alice_v1.safetensors",))


def test_an_unknown_model_list_counts_as_capable() -> None:
    # one server whose /object_info was not read yet behaves as before: ComfyUI decides
    servers = [view("a", models=None)]
    assert place(servers, NEEDS).server == "a"


def test_an_unhealthy_server_is_never_chosen() -> None:
    servers = [view("a", healthy=False), view("b", busy=1)]
    assert place(servers, NEEDS).server == "b"


def test_model_needs_reads_the_checkpoint_and_every_lora_of_a_graph() -> None:
    graph = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "base.safetensors"}},
        "10": {"class_type": "LoraLoader", "inputs": {"lora_name": "x.safetensors"}},
        "11": {"class_type": "LoraLoader", "inputs": {"lora_name": "x.safetensors"}},
        "12": {"class_type": "KSampler", "inputs": {"seed": 1}},
        "13": "not a node",
    }
    assert model_needs(graph) == ("base.safetensors", "x.safetensors")
