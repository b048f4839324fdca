"""Evaluators: held-out inputs plus the rule that turns a model's outputs into an accuracy in [0, 1]."""

from __future__ import annotations

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
