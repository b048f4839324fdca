"""Structured pruning of any ``nn.Module`` through torch-pruning's dependency graph, keeping its interface.

A user's block is an arbitrary module (residual stages, nested children). torch-pruning traces it
on an example input and groups every channel dimension that must shrink together (a conv's
outputs with the norm after it and the next conv's inputs, across residual adds). Groups that reach
the module's output or its input are its interface and keep their size, found by trying each
one on a copy; every other group loses ``level`` of its channels, least important first by
weight magnitude (L1 or L2 norm, torch-pruning's ``MagnitudeImportance``). Attention projections
whose outputs are reshaped into heads are named with their head count (``heads``): torch-pruning
then removes whole heads, the same ones from query, key, value and the output projection (the
module must read its head count from its weights' shapes, not from an attribute).

A pruned module is stored as the user's factory plus the new sizes (:func:`sizes`); the pool
rebuilds it by calling the factory, shrinking the modules to those sizes (:func:`resize`) and
loading the stored tensors, never by unpickling.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

Tensors = tuple[torch.Tensor, ...]
# The norms torch-pruning ranks channels by.
IMPORTANCE = {"l1": 1, "l2": 2}
# Layers whose output channels root a group, and the attributes that give a module's sizes.
_ROOTS = (nn.Conv1d, nn.Conv2d, nn.Linear)
_SIZE_ATTRS = ("in_channels", "out_channels", "groups", "in_features", "out_features", "num_features",
               "num_channels", "normalized_shape", "embed_dim")


def _outputs(module: nn.Module, inputs: Tensors) -> list[tuple[int, ...]]:
    with torch.no_grad():
        out = module(*inputs)
    return [tuple(t.shape) for t in (out if isinstance(out, tuple) else (out,))]


def _why(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _out_channels(layer: nn.Module) -> Any:
    return tp.prune_linear_out_channels if isinstance(layer, nn.Linear) else tp.prune_conv_out_channels


def interface_layers(module: nn.Module, inputs: Tensors, heads: Mapping[str, int] | None = None) -> list[str]:
    """Names of the layers whose output channels are tied to the module's input or output shapes:
    pruning one channel of each, on a copy, changes the output or breaks the forward. Layers in
    ``heads`` are inner by declaration (one channel less would break their reshape into heads)."""
    want = _outputs(module, inputs)
    bound = []
    for name, layer in module.named_modules():
        if not isinstance(layer, _ROOTS) or name in (heads or {}):
            continue
        trial = copy.deepcopy(module)
        graph = tp.DependencyGraph().build_dependency(trial, example_inputs=inputs)
        part = trial.get_submodule(name)
        n = int(part.out_features if isinstance(part, nn.Linear) else part.out_channels)  # type: ignore[arg-type]
        if n < 2:
            bound.append(name)
            continue
        graph.get_pruning_group(part, _out_channels(part), idxs=[0]).prune()
        try:
            same = _outputs(trial, inputs) == want
        except Exception:  # noqa: BLE001 - a forward the pruned copy breaks, in whatever way: the layer is bound
            same = False
        if not same:
            bound.append(name)
    return bound


def prune_module(module: nn.Module, inputs: Tensors, level: float, importance: str = "l1",
                 where: str = "the module", heads: Mapping[str, int] | None = None) -> nn.Module | None:
    """A copy of ``module`` with ``level`` of each inner channel group (and of the heads of the
    layers in ``heads``, by name) removed; None when it has no inner channels (every layer sets its
    input or output shape); ValueError naming ``where`` and why when torch-pruning cannot trace or
    prune it."""
    if importance not in IMPORTANCE:
        raise ValueError(f"importance must be one of {', '.join(IMPORTANCE)}, not {importance!r}")
    with warnings.catch_warnings():
        # Parameters used outside a layer (a ViT's class token and positions): torch-pruning warns
        # that it would prune their last dimension with their group; the output check below
        # catches any such pruning that breaks the interface.
        warnings.filterwarnings("ignore", message="Unwrapped parameters detected")
        return _prune(module, inputs, level, importance, where, dict(heads or {}))


def _prune(module: nn.Module, inputs: Tensors, level: float, importance: str, where: str,
           heads: dict[str, int]) -> nn.Module | None:
    new = copy.deepcopy(module).eval()
    want = _outputs(new, inputs)
    roots = [n for n, m in new.named_modules() if isinstance(m, _ROOTS)]
    try:
        bound = set(interface_layers(new, inputs, heads))
    except Exception as err:  # noqa: BLE001 - the trace fails in many ways; say where and why
        raise ValueError(f"torch-pruning cannot trace {where}: {_why(err)}") from None
    if all(n in bound for n in roots):
        return None
    named = {n: new.get_submodule(n) for n in heads}
    try:
        pruner = tp.pruner.MagnitudePruner(
            new, inputs, importance=tp.importance.MagnitudeImportance(p=IMPORTANCE[importance]),
            pruning_ratio=level, ignored_layers=[new.get_submodule(n) for n in bound],
            num_heads={named[n]: k for n, k in heads.items()}, prune_num_heads=bool(heads),
            prune_head_dims=not heads, head_pruning_ratio=level)
        pruner.step()
    except Exception as err:  # noqa: BLE001 - torch-pruning fails in many ways; say where and why
        raise ValueError(f"torch-pruning cannot prune {where}: {_why(err)}") from None
    got = _outputs(new, inputs)
    if got != want:
        raise ValueError(f"structured pruning changed the output of {where} from {want} to {got}")
    return new


def sizes(fresh: nn.Module, pruned: nn.Module) -> dict[str, dict[str, Any]]:
    """Per submodule that ``pruned`` changed: its size attributes and the shapes of its own tensors."""
    out: dict[str, dict[str, Any]] = {}
    old = dict(fresh.named_modules())
    for name, m in pruned.named_modules():
        before = old.get(name)
        if before is None:
            continue
        tensors = {k: list(v.shape) for k, v in [*m.named_parameters(recurse=False), *m.named_buffers(recurse=False)]
                   if v is not None}
        was = {k: list(v.shape) for k, v in [*before.named_parameters(recurse=False),
                                             *before.named_buffers(recurse=False)] if v is not None}
        if tensors == was:
            continue
        attrs = {a: list(v) if isinstance(v, tuple) else v for a in _SIZE_ATTRS
                 if isinstance(v := getattr(m, a, None), int | tuple)}
        out[name] = {"attrs": attrs, "tensors": tensors}
    return out


def resize(module: nn.Module, changes: dict[str, dict[str, Any]]) -> nn.Module:
    """``module`` (in place) with the sizes :func:`sizes` recorded: attributes set, tensors re-made
    empty at their stored shapes, ready for ``load_state_dict``."""
    for name, change in changes.items():
        m = module.get_submodule(name)
        for attr, value in change["attrs"].items():
            setattr(m, attr, tuple(value) if isinstance(value, list) else value)
        for key, shape in change["tensors"].items():
            current = getattr(m, key)
            blank = torch.empty(shape, dtype=current.dtype)
            if isinstance(current, nn.Parameter):
                setattr(m, key, nn.Parameter(blank, requires_grad=current.requires_grad))
            else:
                m.register_buffer(key, blank)
    return module
