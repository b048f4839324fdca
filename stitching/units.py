"""Units: the smallest rebuildable pieces a base model is a chain of.

A unit is a ``torch.nn.Module`` whose architecture is fully described by its
kind and a JSON-able config, so that the pool can rebuild it from the manifest
plus its safetensors tensors alone. Every unit maps a tuple of tensors to a
tuple of tensors. A block is a run of consecutive units.

Structured pruning is the same for every kind (:meth:`Unit.structured`): torch-pruning traces the
unit and removes inner channels (and attention heads) while its input and output shapes stay. Each
kind knows only what differs between kinds: how its config reads the pruned sizes back
(:meth:`Unit.sized`), and which of its layers are split into attention heads (:meth:`Unit.head_layers`).
"""

from __future__ import annotations

import copy
import importlib
import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from stitching.layers import QuantConv, QuantLinear, conv, linear
from stitching.structural import prune_module, resize, sizes

Tensors = tuple[torch.Tensor, ...]
State = dict[str, torch.Tensor]
# Model factories by name that are not importable (a live module handed to the Python API);
# looked up before importing. Passed down explicitly: the pool that holds such a model keeps them.
Factories = Mapping[str, Callable[[], nn.Module]]


def _size(module: nn.Module, layer: str, attr: str) -> int:
    """A size attribute (``out_channels``, ``out_features``) of one of ``module``'s layers."""
    return int(getattr(module.get_submodule(layer), attr))


class Unit(nn.Module):
    """Base of every unit kind: ``kind`` + ``config`` rebuild the architecture."""

    kind: ClassVar[str] = ""

    def __init__(self, **config: Any) -> None:
        super().__init__()
        self.config: dict[str, Any] = dict(config)

    def head_layers(self) -> dict[str, int]:
        """Layers (by name) whose outputs are split into attention heads, and how many heads."""
        return {}

    def sized(self, pruned: nn.Module) -> dict[str, Any]:
        """The config changes that rebuild ``pruned`` (this unit, structurally pruned). A kind whose
        every layer sets its input or output shape has nothing to prune and never gets here."""
        raise ValueError(f"unit kind {self.kind!r} has inner channels but does not say how its config follows them")

    def structured(self, level: float, inputs: Tensors, importance: str = "l1") -> Unit | None:
        """A copy with ``level`` of its inner channels (and heads) removed by torch-pruning, least
        important first by the ``importance`` norm of their weights, its interface kept; traced on its
        example ``inputs``. None when the unit has no inner channels."""
        where = f"unit {self.kind!r}"
        pruned = prune_module(self, inputs, level, importance, where=where, heads=self.head_layers())
        if pruned is None:
            return None
        new = build_unit(self.kind, {**self.config, **self.sized(pruned)})
        new.load_state_dict(pruned.state_dict(), strict=True)
        return new.eval()

    def with_config(self, **changes: Any) -> Unit:
        """A new (untrained) unit of the same kind with ``changes`` to its config."""
        return build_unit(self.kind, {**self.config, **changes})

    def forward(self, *xs: torch.Tensor) -> Tensors:  # pragma: no cover - abstract
        raise NotImplementedError


class ConvBlock(Unit):
    """3x3 conv -> ReLU -> 3x3 conv (+ residual when shapes allow) -> ReLU [-> 2x2 max-pool]."""

    kind = "conv_block"

    def __init__(self, in_ch: int, hidden: int, out_ch: int, pool: bool = False, int8: bool = False) -> None:
        super().__init__(in_ch=in_ch, hidden=hidden, out_ch=out_ch, pool=pool, int8=int8)
        self.conv1 = conv(2, in_ch, hidden, 3, int8, padding=1)
        self.conv2 = conv(2, hidden, out_ch, 3, int8, padding=1)
        self.residual = in_ch == out_ch
        self.pool = pool

    def forward(self, *xs: torch.Tensor) -> Tensors:
        x = xs[0]
        y = self.conv2(F.relu(self.conv1(x)))
        if self.residual:
            y = y + x
        y = F.relu(y)
        if self.pool:
            y = F.max_pool2d(y, 2)
        return (y,)

    def sized(self, pruned: nn.Module) -> dict[str, Any]:
        return {"hidden": _size(pruned, "conv1", "out_channels")}


class ConvStem(Unit):
    """ResNet stem: k x k strided conv (batch norm folded in) -> ReLU -> 3x3/2 max-pool."""

    kind = "conv_stem"

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 7, stride: int = 2, int8: bool = False) -> None:
        super().__init__(in_ch=in_ch, out_ch=out_ch, kernel=kernel, stride=stride, int8=int8)
        self.conv = conv(2, in_ch, out_ch, kernel, int8, stride=stride, padding=kernel // 2)

    def forward(self, *xs: torch.Tensor) -> Tensors:
        return (F.max_pool2d(F.relu(self.conv(xs[0])), 3, 2, 1),)


class Bottleneck(Unit):
    """ResNet bottleneck (batch norm folded into the convs): 1x1 -> 3x3 -> 1x1, plus shortcut."""

    kind = "bottleneck"

    def __init__(
        self,
        in_ch: int,
        mid1: int,
        mid2: int,
        out_ch: int,
        stride: int = 1,
        downsample: bool = False,
        int8: bool = False,
    ) -> None:
        super().__init__(
            in_ch=in_ch, mid1=mid1, mid2=mid2, out_ch=out_ch, stride=stride, downsample=downsample, int8=int8
        )
        self.conv1 = conv(2, in_ch, mid1, 1, int8)
        self.conv2 = conv(2, mid1, mid2, 3, int8, stride=stride, padding=1)
        self.conv3 = conv(2, mid2, out_ch, 1, int8)
        self.shortcut = conv(2, in_ch, out_ch, 1, int8, stride=stride) if downsample else None

    def forward(self, *xs: torch.Tensor) -> Tensors:
        x = xs[0]
        y = self.conv3(F.relu(self.conv2(F.relu(self.conv1(x)))))
        return (F.relu(y + (self.shortcut(x) if self.shortcut is not None else x)),)

    def sized(self, pruned: nn.Module) -> dict[str, Any]:
        return {"mid1": _size(pruned, "conv1", "out_channels"), "mid2": _size(pruned, "conv2", "out_channels")}


def _fused(conv_layer: nn.Module, bn: nn.Module | None) -> State:
    """The weight and bias of ``conv_layer`` with the (eval-mode) batch norm after it folded in."""
    assert isinstance(conv_layer, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
    fused = fuse_conv_bn_eval(conv_layer.eval(), bn.eval())
    return {"weight": fused.weight.detach().clone(), "bias": fused.bias.detach().clone()}  # type: ignore[union-attr]


class ConvReLU(Unit):
    """CIFAR-style ResNet stem: k x k conv [-> batch norm] -> ReLU, at full resolution.

    ``bn`` is for training; the zoo stores the unit with the norm folded into the conv (:meth:`folded`).
    """

    kind = "conv_relu"

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, bn: bool = False, int8: bool = False) -> None:
        super().__init__(in_ch=in_ch, out_ch=out_ch, kernel=kernel, bn=bn, int8=int8)
        self.conv = conv(2, in_ch, out_ch, kernel, int8, padding=kernel // 2, bias=not bn)
        self.bn = nn.BatchNorm2d(out_ch) if bn else None

    def forward(self, *xs: torch.Tensor) -> Tensors:
        y = self.conv(xs[0])
        return (F.relu(self.bn(y) if self.bn is not None else y),)

    def folded(self) -> Unit:
        """The same function with the batch norm folded into the conv (eval-mode statistics)."""
        new = self.with_config(bn=False)
        new.load_state_dict({f"conv.{k}": v for k, v in _fused(self.conv, self.bn).items()}, strict=True)
        return new.eval()


class BasicBlock(Unit):
    """ResNet-18/34 basic block: 3x3 conv -> ReLU -> 3x3 conv, plus the shortcut (a strided 1x1 conv
    when the shape changes), -> ReLU; each conv followed by batch norm when ``bn``.

    ``bn`` is for training; the zoo stores the block with its norms folded into the convs
    (:meth:`folded`), so that magnitude importance ranks channels by their folded weights.
    """

    kind = "basic_block"

    def __init__(self, in_ch: int, mid: int, out_ch: int, stride: int = 1, bn: bool = False, int8: bool = False) -> None:
        super().__init__(in_ch=in_ch, mid=mid, out_ch=out_ch, stride=stride, bn=bn, int8=int8)
        self.conv1 = conv(2, in_ch, mid, 3, int8, stride=stride, padding=1, bias=not bn)
        self.conv2 = conv(2, mid, out_ch, 3, int8, padding=1, bias=not bn)
        reshaped = stride != 1 or in_ch != out_ch
        self.shortcut = conv(2, in_ch, out_ch, 1, int8, stride=stride, bias=not bn) if reshaped else None
        self.bn1 = nn.BatchNorm2d(mid) if bn else None
        self.bn2 = nn.BatchNorm2d(out_ch) if bn else None
        self.shortcut_bn = nn.BatchNorm2d(out_ch) if bn and reshaped else None

    @staticmethod
    def _norm(bn: nn.Module | None, y: torch.Tensor) -> torch.Tensor:
        return bn(y) if bn is not None else y

    def forward(self, *xs: torch.Tensor) -> Tensors:
        x = xs[0]
        y = self._norm(self.bn2, self.conv2(F.relu(self._norm(self.bn1, self.conv1(x)))))
        if self.shortcut is not None:
            x = self._norm(self.shortcut_bn, self.shortcut(x))
        return (F.relu(y + x),)

    def sized(self, pruned: nn.Module) -> dict[str, Any]:
        return {"mid": _size(pruned, "conv1", "out_channels")}

    def folded(self) -> Unit:
        """The same function with each batch norm folded into the conv before it (eval-mode statistics)."""
        new = self.with_config(bn=False)
        pairs = [("conv1", self.bn1), ("conv2", self.bn2)] + ([("shortcut", self.shortcut_bn)] if self.shortcut else [])
        state = {f"{name}.{k}": v for name, bn in pairs for k, v in _fused(self.get_submodule(name), bn).items()}
        new.load_state_dict(state, strict=True)
        return new.eval()


class Head(Unit):
    """Classifier head: pool (flatten | avg2d | cls token) [-> LayerNorm] [-> Linear -> act] -> Linear."""

    kind = "head"

    def __init__(
        self,
        pool: str,
        in_features: int,
        hidden: int,
        out_features: int,
        ln: bool = False,
        act: str = "relu",
        int8: bool = False,
    ) -> None:
        super().__init__(
            pool=pool, in_features=in_features, hidden=hidden, out_features=out_features, ln=ln, act=act, int8=int8
        )
        if pool not in ("flatten", "avg2d", "cls"):
            raise ValueError(f"head pool must be flatten, avg2d or cls, not {pool!r}")
        self.pool, self.act = pool, act
        self.norm = nn.LayerNorm(in_features) if ln else None
        self.fc1 = linear(in_features, hidden, int8) if hidden else None
        self.fc2 = linear(hidden or in_features, out_features, int8)

    def forward(self, *xs: torch.Tensor) -> Tensors:
        x = xs[0]
        if self.pool == "flatten":
            x = x.flatten(1)
        elif self.pool == "avg2d":
            x = x.mean(dim=(2, 3))
        else:
            x = x[:, 0]
        if self.norm is not None:
            x = self.norm(x)
        if self.fc1 is not None:
            x = self.fc1(x)
            x = torch.tanh(x) if self.act == "tanh" else F.relu(x)
        return (self.fc2(x),)

    def sized(self, pruned: nn.Module) -> dict[str, Any]:
        return {"hidden": _size(pruned, "fc1", "out_features")}


class BertEmbeddings(Unit):
    """BERT embeddings: word + position + token-type, LayerNorm. (ids, mask) -> (hidden, float mask)."""

    kind = "bert_embeddings"

    def __init__(self, vocab: int, hidden: int, max_positions: int, type_vocab: int = 2, eps: float = 1e-12) -> None:
        super().__init__(vocab=vocab, hidden=hidden, max_positions=max_positions, type_vocab=type_vocab, eps=eps)
        self.word_embeddings = nn.Embedding(vocab, hidden)
        self.position_embeddings = nn.Embedding(max_positions, hidden)
        self.token_type_embeddings = nn.Embedding(type_vocab, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, *xs: torch.Tensor) -> Tensors:
        ids, mask = xs
        positions = torch.arange(ids.shape[1], device=ids.device)
        h = self.word_embeddings(ids) + self.position_embeddings(positions)[None]
        h = h + self.token_type_embeddings.weight[0]
        return (self.LayerNorm(h), mask.to(torch.float32))


class TransformerLayer(Unit):
    """Encoder layer: multi-head self-attention + GELU FFN, post-LN (BERT) or pre-LN (ViT).

    ``masked`` layers take (hidden, mask) and pass the mask on; others take (hidden,).
    Structured pruning removes whole heads and FFN rows.
    """

    kind = "transformer_layer"

    def __init__(
        self,
        hidden: int,
        heads: int,
        head_dim: int,
        ffn: int,
        pre_ln: bool = False,
        masked: bool = False,
        eps: float = 1e-12,
        int8: bool = False,
    ) -> None:
        super().__init__(
            hidden=hidden, heads=heads, head_dim=head_dim, ffn=ffn, pre_ln=pre_ln, masked=masked, eps=eps, int8=int8
        )
        inner = heads * head_dim
        self.head_dim, self.pre_ln, self.masked = head_dim, pre_ln, masked
        self.query = linear(hidden, inner, int8)
        self.key = linear(hidden, inner, int8)
        self.value = linear(hidden, inner, int8)
        self.attn_out = linear(inner, hidden, int8)
        self.attn_norm = nn.LayerNorm(hidden, eps=eps)
        self.ffn_in = linear(hidden, ffn, int8)
        self.ffn_out = linear(ffn, hidden, int8)
        self.ffn_norm = nn.LayerNorm(hidden, eps=eps)

    def _attention(self, h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, n, _ = h.shape
        # From the weights, not the config: torch-pruning removes heads by shrinking them.
        heads = _size(self, "query", "out_features") // self.head_dim

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, n, heads, self.head_dim).transpose(1, 2)

        q, k, v = split(self.query(h)), split(self.key(h)), split(self.value(h))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
        if mask is not None:
            scores = scores + (1.0 - mask[:, None, None, :]) * -10000.0
        ctx = torch.softmax(scores, dim=-1) @ v
        return self.attn_out(ctx.transpose(1, 2).reshape(b, n, heads * self.head_dim))

    def forward(self, *xs: torch.Tensor) -> Tensors:
        h = xs[0]
        mask = xs[1] if self.masked else None
        if self.pre_ln:
            h = h + self._attention(self.attn_norm(h), mask)
            h = h + self.ffn_out(F.gelu(self.ffn_in(self.ffn_norm(h))))
        else:
            h = self.attn_norm(h + self._attention(h, mask))
            h = self.ffn_norm(h + self.ffn_out(F.gelu(self.ffn_in(h))))
        return (h, xs[1]) if self.masked else (h,)

    def head_layers(self) -> dict[str, int]:
        return {"query": self.config["heads"], "key": self.config["heads"], "value": self.config["heads"]}

    def sized(self, pruned: nn.Module) -> dict[str, Any]:
        return {"heads": _size(pruned, "query", "out_features") // self.head_dim,
                "ffn": _size(pruned, "ffn_in", "out_features")}


class MeanPool(Unit):
    """Sentence embedding: attention-masked mean of token states, L2-normalised. (hidden, mask) -> (emb,)."""

    kind = "mean_pool"

    def __init__(self, normalize: bool = True) -> None:
        super().__init__(normalize=normalize)
        self.normalize = normalize

    def forward(self, *xs: torch.Tensor) -> Tensors:
        h, mask = xs
        m = mask[:, :, None]
        emb = (h * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
        return (F.normalize(emb, p=2.0, dim=1) if self.normalize else emb,)


class MaskDrop(Unit):
    """Drops the attention mask once the encoder is done: (hidden, mask) -> (hidden,)."""

    kind = "mask_drop"

    def forward(self, *xs: torch.Tensor) -> Tensors:
        return (xs[0],)


class PatchEmbed(Unit):
    """ViT patch embedding: strided conv, class token, learned positions. (image,) -> (tokens,)."""

    kind = "patch_embed"

    def __init__(self, in_ch: int, hidden: int, patch: int, patches: int, int8: bool = False) -> None:
        super().__init__(in_ch=in_ch, hidden=hidden, patch=patch, patches=patches, int8=int8)
        self.proj = conv(2, in_ch, hidden, patch, int8, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, hidden))
        self.pos_embed = nn.Parameter(torch.zeros(1, patches + 1, hidden))

    def forward(self, *xs: torch.Tensor) -> Tensors:
        t = self.proj(xs[0]).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(t.shape[0], -1, -1)
        return (torch.cat([cls, t], dim=1) + self.pos_embed,)


class AudioFeatures(Unit):
    """Wav2Vec2 feature encoder: 1-d conv stack with GELU (group norm after the first). (wave,) -> (frames,)."""

    kind = "audio_features"

    def __init__(self, channels: list[int], kernels: list[int], strides: list[int], int8: bool = False) -> None:
        super().__init__(channels=list(channels), kernels=list(kernels), strides=list(strides), int8=int8)
        ins = [1] + list(channels[:-1])
        self.convs = nn.ModuleList(
            conv(1, i, o, k, int8, stride=s, bias=False) for i, o, k, s in zip(ins, channels, kernels, strides)
        )
        self.norm = nn.GroupNorm(channels[0], channels[0], affine=True)

    def forward(self, *xs: torch.Tensor) -> Tensors:
        x = xs[0][:, None, :]
        for i, layer in enumerate(self.convs):
            x = layer(x)
            if i == 0:
                x = self.norm(x)
            x = F.gelu(x)
        return (x.transpose(1, 2),)

    def sized(self, pruned: nn.Module) -> dict[str, Any]:
        convs = pruned.get_submodule("convs")
        return {"channels": [_size(convs, str(i), "out_channels") for i in range(len(self.config["channels"]))]}


class FeatureProjection(Unit):
    """Wav2Vec2 feature projection + convolutional relative position embedding (post-LN)."""

    kind = "feature_projection"

    def __init__(
        self, in_features: int, hidden: int, pos_kernel: int, pos_groups: int, eps: float = 1e-5, int8: bool = False
    ) -> None:
        super().__init__(
            in_features=in_features, hidden=hidden, pos_kernel=pos_kernel, pos_groups=pos_groups, eps=eps, int8=int8
        )
        self.in_norm = nn.LayerNorm(in_features, eps=eps)
        self.proj = linear(in_features, hidden, int8)
        self.pos_conv = conv(1, hidden, hidden, pos_kernel, int8, padding=pos_kernel // 2, groups=pos_groups)
        self.out_norm = nn.LayerNorm(hidden, eps=eps)
        self.trim = pos_kernel % 2 == 0

    def forward(self, *xs: torch.Tensor) -> Tensors:
        h = self.proj(self.in_norm(xs[0]))
        pos = self.pos_conv(h.transpose(1, 2))
        if self.trim:
            pos = pos[:, :, :-1]
        return (self.out_norm(h + F.gelu(pos).transpose(1, 2)),)


def import_factory(path: str, factories: Factories | None = None) -> Callable[[], nn.Module]:
    """The model factory named ``path``: one of ``factories``, else ``pkg.mod:fn`` imported."""
    if factories is not None and path in factories:
        return factories[path]
    module_name, _, attr = path.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot import model factory {path!r}: {err}") from None
    if not callable(factory):
        raise ValueError(f"model factory {path!r} is not callable")  # noqa: TRY004 - bad user input
    return factory


def _int8_layers(module: nn.Module) -> nn.Module:
    """``module`` with every float Linear/Conv swapped for its int8-weight twin (same shapes)."""
    for name, layer in list(module.named_modules()):
        if isinstance(layer, nn.Linear):
            new: nn.Module = QuantLinear(layer.in_features, layer.out_features, layer.bias is not None)
        elif isinstance(layer, (nn.Conv1d, nn.Conv2d)):
            k, s, p = layer.kernel_size, layer.stride, layer.padding
            if len(set(k)) != 1 or len(set(s)) != 1 or not isinstance(p, tuple) or len(set(p)) != 1 or set(layer.dilation) != {1}:
                raise ValueError(f"int8 supports square, undilated convolutions only; {name} is not")
            dim = 1 if isinstance(layer, nn.Conv1d) else 2
            new = QuantConv(dim, layer.in_channels, layer.out_channels, k[0], s[0], p[0], layer.groups, layer.bias is not None)
        else:
            continue
        if not name:
            return new
        parent, _, leaf = name.rpartition(".")
        setattr(module.get_submodule(parent) if parent else module, leaf, new)
    return module


class TorchChild(Unit):
    """One top-level child of a user's model, rebuilt by calling the model's factory."""

    kind = "torch_child"

    def __init__(self, factory: str, child: str, int8: bool = False, factories: Factories | None = None,
                 sizes: dict[str, dict[str, Any]] | None = None) -> None:
        # ``sizes``: what structured pruning shrank (stitching.structural.sizes); absent when dense.
        super().__init__(factory=factory, child=child, int8=int8, **({"sizes": sizes} if sizes else {}))
        self.factories = factories  # not in the config: live factories are not JSON
        # A copy: an in-memory factory hands out the user's own module, whose child must stay untouched.
        self.inner = copy.deepcopy(import_factory(factory, factories)().get_submodule(child))
        if sizes:
            resize(self.inner, sizes)
        if int8:
            self.inner = _int8_layers(self.inner)

    def with_config(self, **changes: Any) -> Unit:
        return TorchChild(**{**self.config, **changes}, factories=self.factories)

    def forward(self, *xs: torch.Tensor) -> Tensors:
        out = self.inner(*xs)
        return out if isinstance(out, tuple) else (out,)

    def structured(self, level: float, inputs: Tensors, importance: str = "l1") -> Unit | None:
        if self.config["int8"] or self.config.get("sizes"):
            raise ValueError(f"{self.config['child']} of {self.config['factory']} is already a variant")
        where = f"{self.config['child']} of {self.config['factory']}"
        pruned = prune_module(self.inner, inputs, level, importance, where=where)
        if pruned is None:
            return None  # no inner channels: the child stays as it is, like a zoo unit without any
        new = TorchChild(self.config["factory"], self.config["child"], factories=self.factories,
                         sizes=sizes(self.inner, pruned))
        new.inner.load_state_dict(pruned.state_dict(), strict=True)
        return new


UNIT_KINDS: dict[str, type[Unit]] = {
    cls.kind: cls
    for cls in (
        ConvBlock,
        ConvStem,
        Bottleneck,
        ConvReLU,
        BasicBlock,
        Head,
        BertEmbeddings,
        TransformerLayer,
        MeanPool,
        MaskDrop,
        PatchEmbed,
        AudioFeatures,
        FeatureProjection,
        TorchChild,
    )
}


def build_unit(kind: str, config: dict[str, Any], factories: Factories | None = None) -> Unit:
    """Rebuild an (untrained) unit from its kind and config (``factories``: for user models' children)."""
    if kind not in UNIT_KINDS:
        raise ValueError(f"unknown unit kind {kind!r}; known: {', '.join(sorted(UNIT_KINDS))}")
    if kind == TorchChild.kind:
        return TorchChild(**config, factories=factories)
    return UNIT_KINDS[kind](**config)
