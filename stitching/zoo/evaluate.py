"""Evaluators: held-out inputs plus the rule that turns a model's outputs into an accuracy in [0, 1]
(the zoo's), or a user's own metric called on the whole (stitched) model (:class:`UserEvaluator`)."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Evaluator:
    """Inputs of the evaluation set and how to score outputs on it.

    ``metric`` is ``top1`` (reference = labels) or ``cosine_to_dense``
    (reference = the dense model's embeddings; accuracy = mean cosine similarity).
    """

    inputs: tuple[torch.Tensor, ...]
    reference: torch.Tensor
    metric: Literal["top1", "cosine_to_dense"]
    data: str

    @property
    def size(self) -> int:
        return int(self.reference.shape[0])

    @property
    def floor(self) -> float:
        """Chance level: what a model that learned nothing scores (1/classes, or 0 for cosine)."""
        return 1.0 / (int(self.reference.max()) + 1) if self.metric == "top1" else 0.0

    def score(self, outputs: tuple[torch.Tensor, ...]) -> float:
        out = outputs[0].detach()
        if self.metric == "top1":
            return float((out.argmax(dim=1) == self.reference).float().mean())
        return float(F.cosine_similarity(out, self.reference, dim=1).mean())


# How long one call of a user's evaluate may take by default (seconds): a user's metric on a held-out
# set of a few thousand samples takes seconds on a CPU; a call that takes minutes is stuck or far
# too large for measuring dozens of variants. A workload or API call may set its own limit.
EVALUATE_LIMIT_S = 60.0


class EvaluationError(ValueError):
    """A user's evaluate raised, returned something other than a number in [0, 1], or took too long."""


@dataclass(frozen=True)
class UserEvaluator:
    """A user's own metric on the user's own data: ``fn(module) -> float`` in [0, 1], higher is better.

    ``module`` is the (stitched) model as one ``nn.Module`` taking the model's inputs. ``model``
    names the model in messages; ``data`` says where the metric comes from (it is recorded with
    the accuracy terms); ``floor``: the score of a model that learned nothing, when the user knows it.
    """

    fn: Callable[[torch.nn.Module], float]
    model: str
    data: str
    limit_s: float = EVALUATE_LIMIT_S
    floor: float = 0.0

    def evaluate(self, module: torch.nn.Module) -> float:
        """``fn(module)``, checked: EvaluationError naming the model when it raises, returns a
        non-number or a value outside [0, 1], or runs past ``limit_s``."""
        out: list[object] = []
        errors: list[BaseException] = []

        def call() -> None:
            try:
                with torch.no_grad():
                    out.append(self.fn(module))
            except BaseException as err:  # noqa: BLE001 - the user's code: report whatever it raised
                errors.append(err)

        # A daemon thread: a call past the limit is reported at once; it is left to finish on its own.
        worker = threading.Thread(target=call, name=f"evaluate-{self.model}", daemon=True)
        worker.start()
        worker.join(self.limit_s)
        where = f"the evaluate of model {self.model!r} ({self.data})"
        if worker.is_alive():
            raise EvaluationError(f"{where} took longer than its limit of {self.limit_s:g} s")
        if errors:
            err = errors[0]
            raise EvaluationError(f"{where} raised {type(err).__name__}: {err}")
        value = out[0]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise EvaluationError(f"{where} returned {value!r}; expected a number in [0, 1]")
        if not 0.0 <= float(value) <= 1.0:
            raise EvaluationError(f"{where} returned {value!r}, outside [0, 1] (higher is better)")
        return float(value)
