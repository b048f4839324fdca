"""Architecture-realistic profiling models with random weights (seed 0): latency and memory only.

Their accuracy is unknown by construction; the zoo marks them
``accuracy_known=False`` and gives no evaluator. Inputs are reduced from the
usual sizes so that CPU profiling stays quick; each docstring says how.
Batch norm is folded into the convolutions (what an inference engine runs).
"""

from __future__ import annotations

from pathlib import Path

import torch

from stitching.partition import BaseModel
from stitching.units import (
    AudioFeatures,
    BertEmbeddings,
    Bottleneck,
    ConvStem,
    FeatureProjection,
    Head,
    MaskDrop,
    PatchEmbed,
    TransformerLayer,
    Unit,
)

SEED = 0
RESNET50_DOC = "ResNet-50 shapes (stem + 16 bottlenecks + head), random weights, 112x112 input (reduced from 224)"
BERT_BASE_DOC = "BERT-base shapes (12 layers, hidden 768, 12 heads), random weights, 64 tokens (reduced from 128/512)"
VIT_S_DOC = "ViT-S/16 shapes (12 layers, hidden 384, 6 heads), random weights, 112x112 input = 49 patches (reduced from 224)"
WAV2VEC2_DOC = "Wav2Vec2-base shapes (conv feature encoder + 12 layers, hidden 768), random weights, 1 s of 16 kHz audio"


def resnet50(cache_dir: Path) -> BaseModel:
    """ResNet-50: 3x112x112 input (reduced from 224x224), 1000 classes."""
    torch.manual_seed(SEED)
    units: list[tuple[str, Unit]] = [("stem", ConvStem(3, 64))]
    in_ch = 64
    for stage, (depth, mid) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512))):
        for i in range(depth):
            stride = 2 if i == 0 and stage > 0 else 1
            units.append((f"layer{stage + 1}.{i}", Bottleneck(in_ch, mid, mid, mid * 4, stride, downsample=i == 0)))
            in_ch = mid * 4
    units.append(("head", Head("avg2d", 2048, 0, 1000)))
    return BaseModel("resnet50", units, (torch.randn(1, 3, 112, 112),))


def bert_base(cache_dir: Path) -> BaseModel:
    """BERT-base encoder + pooler: 64 tokens (reduced from 128/512)."""
    torch.manual_seed(SEED)
    units: list[tuple[str, Unit]] = [("embeddings", BertEmbeddings(30522, 768, 512))]
    units += [(f"layer{i}", TransformerLayer(768, 12, 64, 3072, masked=True)) for i in range(12)]
    units.append(("pooler", MaskDrop()))
    units.append(("head", Head("cls", 768, 768, 768, act="tanh")))
    ids = torch.randint(1000, 30000, (1, 64))
    return BaseModel("bert_base", units, (ids, torch.ones(1, 64, dtype=torch.int64)))


def vit_s(cache_dir: Path) -> BaseModel:
    """ViT-S/16: 3x112x112 input = 7x7 patches (reduced from 224x224), 1000 classes."""
    torch.manual_seed(SEED)
    units: list[tuple[str, Unit]] = [("patch_embed", PatchEmbed(3, 384, 16, 49))]
    units += [(f"block{i}", TransformerLayer(384, 6, 64, 1536, pre_ln=True, eps=1e-6)) for i in range(12)]
    units.append(("head", Head("cls", 384, 0, 1000, ln=True)))
    return BaseModel("vit_s", units, (torch.randn(1, 3, 112, 112),))


def wav2vec2_base(cache_dir: Path) -> BaseModel:
    """Wav2Vec2-base: 16000 samples (1 s at 16 kHz) -> 49 frames of 768."""
    torch.manual_seed(SEED)
    units: list[tuple[str, Unit]] = [
        ("feature_encoder", AudioFeatures([512] * 7, [10, 3, 3, 3, 3, 2, 2], [5, 2, 2, 2, 2, 2, 2])),
        ("feature_projection", FeatureProjection(512, 768, 128, 16)),
    ]
    units += [(f"layer{i}", TransformerLayer(768, 12, 64, 3072, eps=1e-5)) for i in range(12)]
    return BaseModel("wav2vec2_base", units, (torch.randn(1, 16000),))
