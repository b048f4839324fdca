"""User models: a ``pkg.mod:factory`` whose top-level children run in order become a base model.

Each top-level child is one unit of kind ``torch_child``; the pool rebuilds it
by importing and calling the factory again (never by unpickling) and loading
the stored tensors. Such children have no known inner dimensions, so
structured pruning is refused; unstructured, 2:4, block and int8 work.
Whether the children really form a chain is checked against the factory's
own ``forward`` (:func:`stitching.partition.check_chain`).
"""

from __future__ import annotations

import torch

from stitching.partition import BaseModel
from stitching.units import TorchChild, Unit, import_factory


def load_factory_model(name: str, factory: str, input_shape: tuple[int, ...]) -> BaseModel:
    """A user's model as a base model: its top-level children, checked against its own forward."""
    model = import_factory(factory)().eval()
    children = [n for n, _ in model.named_children()]
    if not children:
        raise ValueError(f"model {name} ({factory}) has no child modules to cut between")
    units: list[tuple[str, Unit]] = []
    for child in children:
        unit = TorchChild(factory, child)
        unit.inner.load_state_dict(model.get_submodule(child).state_dict(), strict=True)
        units.append((child, unit))
    return BaseModel(name, units, (torch.randn(*input_shape, generator=torch.Generator().manual_seed(0)),), reference=model)
