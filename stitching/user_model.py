"""User models: a ``pkg.mod:factory`` whose top-level children run in order become a base model.

Each top-level child is one unit of kind ``torch_child``; the pool rebuilds it
by importing and calling the factory again (never by unpickling) and loading
the stored tensors. Structured pruning goes through torch-pruning's dependency graph
(:mod:`stitching.structural`): a child's inner channels shrink, its interface stays, and the
sizes it shrank to are stored beside the factory so the pool can rebuild it. Unstructured, 2:4,
block and int8 work on every child.
Whether the children really form a chain is checked against the factory's
own ``forward`` (:func:`stitching.partition.check_chain`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from stitching.partition import BaseModel, check_chain, cut_model, split
from stitching.units import Factories, TorchChild, Unit, import_factory


def load_factory_model(name: str, factory: str, input_shape: tuple[int, ...],
                       factories: Factories | None = None) -> BaseModel:
    """A user's model as a base model: its top-level children, checked against its own forward."""
    model = import_factory(factory, factories)().eval()
    children = [n for n, _ in model.named_children()]
    if not children:
        raise ValueError(f"model {name} ({factory}) has no child modules to cut between")
    units: list[tuple[str, Unit]] = []
    for child in children:
        unit = TorchChild(factory, child, factories=factories)
        unit.inner.load_state_dict(model.get_submodule(child).state_dict(), strict=True)
        units.append((child, unit))
    return BaseModel(name, units, (torch.randn(*input_shape, generator=torch.Generator().manual_seed(0)),), reference=model)


def check_partition(name: str, factory: str, input_shape: tuple[int, ...], blocks: int | None,
                    boundaries: Sequence[str] | None, factories: Factories | None = None,
                    export: bool = False) -> None:
    """ValueError unless the user model cuts into the requested blocks, whose chain equals its own
    forward, and (``export``) each dense block can be traced by ``torch.export`` (TVM compiles from it)."""
    base = load_factory_model(name, factory, input_shape, factories)
    cut = cut_model(base, blocks, boundaries)
    dense = split(base, cut)
    check_chain(base, dense)
    if not export:
        return
    xs = base.example_inputs
    for block, (a, b) in zip(dense, cut.ranges):
        try:
            torch.export.export(block, xs)
        except Exception as err:  # noqa: BLE001 - torch.export fails in many ways; say which block and why
            why = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(f"the block of {', '.join(base.unit_names[a:b])} cannot be traced by torch.export: "
                             f"{why}") from None
        with torch.no_grad():
            xs = block.run(*xs)
