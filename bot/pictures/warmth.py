"""PURE: which models a ComfyUI server has warm, and what a switch costs there.

ComfyUI keeps node outputs by their inputs; by default only those of the last prompt
(docs/comfyui.md, C27). A job whose checkpoint and LoRA match a run still in that cache
skips loading and patching them; any other job pays the switch. :class:`Warmth` is what
the bot knows of one server:

* ``recent``: the model sets (``model_needs`` of a job: checkpoint and LoRA files) of the
  last jobs the bot ran there, newest first. The first ``depth`` of them are warm.
* ``depth``: how many runs the server's cache holds, learned from ComfyUI's own
  ``execution_cached`` message rather than from a setting: a set beyond ``depth`` that
  comes back cached shows a deeper cache (``--cache-lru N``), one within it that does not
  shows a shallower one (or another client's prompts in between).
* the switch cost: the mean execution time of cold runs minus that of warm runs, as the
  bot sees them (exponentially weighted), ``DEFAULT_SWITCH_S`` until both were measured.

A server that restarts or reconnects has nothing loaded any more: :meth:`Warmth.forget`.
What it learned of the cache's depth and the switch cost stays: they belong to the
server's configuration and hardware, not to its memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

__all__ = ["DEFAULT_SWITCH_S", "ModelSet", "Warmth"]

ModelSet = tuple[str, ...]

# Until measured: loading an SDXL checkpoint from a local disk and patching a LoRA take a
# few seconds on a GPU host; a LoRA alone, about a second.
DEFAULT_SWITCH_S: Final = 5.0
DEFAULT_RUN_S: Final = 15.0  # an SDXL picture on a GPU, until this server showed its own
WEIGHT: Final = 0.3  # of a new execution time in its running mean
REMEMBERED: Final = 8  # runs kept, so that a deeper cache can be noticed


@dataclass(slots=True)
class _Mean:
    value: float | None = None

    def add(self, sample: float) -> None:
        self.value = sample if self.value is None else self.value + WEIGHT * (sample - self.value)


@dataclass(slots=True)
class Warmth:
    recent: list[ModelSet] = field(default_factory=list)
    depth: int = 1
    _warm_s: _Mean = field(default_factory=_Mean)
    _cold_s: _Mean = field(default_factory=_Mean)
    _any_s: _Mean = field(default_factory=_Mean)

    @property
    def warm(self) -> frozenset[ModelSet]:
        return frozenset(self.recent[: self.depth])

    def is_warm(self, models: ModelSet) -> bool:
        return models in self.recent[: self.depth]

    @property
    def switch_s(self) -> float:
        """What a job whose models are cold here costs more than a warm one."""
        warm, cold = self._warm_s.value, self._cold_s.value
        if warm is None or cold is None:
            return DEFAULT_SWITCH_S
        return max(0.0, cold - warm)

    @property
    def expected_s(self) -> float:
        """About how long a job runs here, warm or cold (``DEFAULT_RUN_S`` until seen)."""
        return DEFAULT_RUN_S if self._any_s.value is None else self._any_s.value

    def ran(self, models: ModelSet, *, cached: bool | None, execution_s: float | None) -> None:
        """A job with *models* finished here; *cached*: ComfyUI did not re-run its loaders
        (None: not known, as for a job recovered after a restart)."""
        if models in self.recent:
            position = self.recent.index(models)
            if cached is True and position >= self.depth:
                self.depth = position + 1
            elif cached is False and position < self.depth:
                self.depth = max(1, position)
            self.recent.remove(models)
        if execution_s is not None:
            self._any_s.add(execution_s)
            if cached is not None:
                (self._warm_s if cached else self._cold_s).add(execution_s)
        self.recent.insert(0, models)
        del self.recent[REMEMBERED:]

    def forget(self) -> None:
        """The server restarted or reconnected: nothing of ours is loaded there now."""
        self.recent.clear()
