"""The pool: an on-disk, content-addressed store of blocks.

Layout of a pool directory::

    manifest.json                 every block record, per-model partitions and variants; the tile index
    blocks/<sha256>.safetensors   one file per unique block (tensors + unit specs in metadata)
    tiles/pack-NNNNN.safetensors  tiles (the multi-task granularity, ``stitching.multitask``), packed

Tiles are the pool's finer granularity: a tile is one ``t x t`` piece of a weight matrix, addressed
by the sha256 of its dtype, shape and bytes (``stitching.multitask.tiles.tile_digest``), stored once
however many masks use it, and packed so that tiles read together sit together. The manifest's
``tiles`` section records each pack's size and sha256 and each tile's ``[pack, byte offset, byte
length, dtype, shape]``; :func:`verify` checks them with the blocks.

A block's digest is the sha256 of its unit specs and tensors, so a block that
two variants (or two models of a workload) share is stored once. The manifest
also records the sha256 of every file's bytes (header, metadata and tensors), so
``verify`` and every load check each byte that is read, and a bad file is named
and never served. Files and the
manifest are written atomically; the manifest is rewritten after every block,
so an interrupted build resumes where it stopped. Loading never uses pickle:
:meth:`Pool.load_module` rebuilds a runnable ``torch.nn.Module`` from the
manifest's unit specs and the block's safetensors file alone.
"""

from __future__ import annotations

import hashlib
import json
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock, Timeout
from safetensors import SafetensorError
from safetensors.torch import load, load_file, save
from tqdm import tqdm

from stitching import zoo
from stitching.atomic import remove_stale, write_bytes
from stitching.partition import (
    BaseModel,
    BlockModule,
    TensorSpec,
    check_chain,
    cut_model,
    measure,
    split,
)
from stitching.prune import Recipe, prune_block
from stitching.reconstruct import CALIBRATION_SIZE, RIDGE, one_thread, reconstruct, standard
from stitching.units import Factories
from stitching.user_model import load_factory_model

FORMAT = "sparseloom-pool/1"
MANIFEST = "manifest.json"
BLOCKS = "blocks"
TILES = "tiles"
LOCK = ".build.lock"


# safetensors dtype names of the tensors tiles hold (weights, heads, norms) -> numpy.
ST_DTYPES: dict[str, np.dtype] = {
    "F32": np.dtype(np.float32), "F16": np.dtype(np.float16), "F64": np.dtype(np.float64),
    "I64": np.dtype(np.int64), "I32": np.dtype(np.int32),
}


class PoolWarning(UserWarning):
    """A bad pool file found while building: it is rebuilt."""


@dataclass(frozen=True)
class Block:
    """One block of one model at one variant, as stored in the pool.

    ``flops`` is what dense execution does; ``effective_flops`` what a kernel
    that skips zero weights would do. ``param_bytes`` are the tensor bytes as
    stored (int8 variants store int8); ``activation_bytes`` the outputs' bytes
    for the example input (batch 1). ``level`` is the fraction of weights removed.
    """

    model: str
    base_model: str
    position: int
    variant: str
    units: tuple[str, ...]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    flops: int
    effective_flops: int
    param_bytes: int
    activation_bytes: int
    pattern: str
    level: float
    nonzero_fraction: float
    digest: str

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["inputs"] = [[list(s.shape), s.dtype] for s in self.inputs]
        d["outputs"] = [[list(s.shape), s.dtype] for s in self.outputs]
        d["units"] = list(self.units)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Block:
        specs = {k: tuple(TensorSpec(tuple(s), t) for s, t in d[k]) for k in ("inputs", "outputs")}
        return cls(**{**d, **specs, "units": tuple(d["units"])})


@dataclass(frozen=True)
class ModelRequest:
    """What to put in the pool for one model: its base model, partition and variants.

    The base model is a zoo name, or a user's ``factory`` ("pkg.mod:fn",
    whose top-level children run in order) with its ``input_shape``. The
    dense variant is always built (it is the reference for every other).
    """

    name: str
    zoo: str | None
    blocks: int | None = 4
    boundaries: tuple[str, ...] | None = None
    recipes: tuple[Recipe, ...] = ()
    factory: str | None = None
    input_shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if (self.zoo is None) == (self.factory is None):
            raise ValueError(f"model {self.name}: give exactly one of a zoo name or a factory")
        if self.factory is not None and self.input_shape is None:
            raise ValueError(f"model {self.name}: a factory model needs an input_shape")

    @property
    def base_model(self) -> str:
        return self.zoo if self.zoo is not None else f"factory:{self.factory}"

    def load(self, cache_dir: Path | None, factories: Factories | None = None) -> BaseModel:
        if self.zoo is not None:
            return zoo.load(self.zoo, cache_dir)
        assert self.factory is not None and self.input_shape is not None
        return load_factory_model(self.name, self.factory, self.input_shape, factories)

    def variants(self) -> tuple[Recipe, ...]:
        out = [Recipe("dense")]
        for r in self.recipes:
            if r not in out:
                out.append(r)
        return tuple(out)


@dataclass(frozen=True)
class PoolProblem:
    """One thing wrong with a pool directory."""

    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


@dataclass(frozen=True)
class PoolSize:
    """Dedup figures: unique block files versus whole-model checkpoints of every variant."""

    block_refs: int
    unique_blocks: int
    pool_bytes: int
    checkpoint_bytes: int

    @property
    def ratio(self) -> float:
        return self.pool_bytes / self.checkpoint_bytes if self.checkpoint_bytes else 1.0


class PoolError(ValueError):
    """A pool file whose bytes differ from what the manifest recorded: named, never served."""


def file_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _metadata(data: bytes) -> dict[str, str] | None:
    """The ``__metadata__`` of a safetensors file's header, or None when the header does not parse."""
    try:
        size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + size])
    except (ValueError, UnicodeDecodeError):
        return None
    meta = header.get("__metadata__", {}) if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else None


def _what_differs(dig: str, info: dict[str, Any], data: bytes) -> str | None:
    """Why a block file's bytes are not the ones recorded for ``dig``, or None when they are."""
    if len(data) != info["bytes"]:
        kind = "truncated" if len(data) < info["bytes"] else "altered"
        return f"{kind}: {len(data)} bytes, manifest says {info['bytes']}"
    try:
        state = load(data)
    except (SafetensorError, OSError, ValueError) as err:
        return f"unreadable safetensors ({err})"
    if digest(info["units"], state) != dig:
        return "altered: tensors (names, dtypes, shapes or bytes) do not match its sha256 name"
    meta = _metadata(data)
    want = {"digest": dig, "units": json.dumps(info["units"])}
    if meta != want:
        keys = sorted(k for k in set(want) | set(meta or {}) if (meta or {}).get(k) != want.get(k))
        return f"altered: header metadata {', '.join(map(repr, keys))} differs from the manifest's"
    recorded = info.get("sha256")
    if recorded is not None and file_sha256(data) != recorded:
        return "altered: header bytes differ from the recorded sha256 of the file"
    return None


def digest(unit_specs: Sequence[dict[str, Any]], state: dict[str, torch.Tensor]) -> str:
    """sha256 over the unit specs (canonical JSON) and every tensor's name, dtype, shape and bytes."""
    h = hashlib.sha256(json.dumps(list(unit_specs), sort_keys=True).encode())
    for name in sorted(state):
        t = state[name].detach().contiguous()
        h.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        # reshape(-1): a 0-d tensor (BatchNorm's num_batches_tracked) cannot be viewed as bytes.
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@dataclass
class _Manifest:
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    blocks: list[dict[str, Any]] = field(default_factory=list)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    tiles: dict[str, Any] = field(default_factory=dict)  # {"packs": {name: {bytes, sha256}}, "index": {digest: entry}}

    def to_bytes(self) -> bytes:
        doc = {"format": FORMAT, "files": self.files, "blocks": self.blocks, "models": self.models}
        if self.tiles:
            doc["tiles"] = self.tiles
        return json.dumps(doc, indent=1).encode()


def _read_manifest(root: Path) -> _Manifest:
    path = root / MANIFEST
    if not path.is_file():
        raise ValueError(f"{root} is not a pool: {MANIFEST} is missing")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} manifest")
    return _Manifest(data["files"], data["blocks"], data["models"], data.get("tiles", {}))


@dataclass(frozen=True)
class TileIndex:
    """The manifest's tile section: each pack's ``{bytes, sha256}`` and each tile's
    ``[pack, byte offset, byte length, dtype, shape]``, by digest."""

    packs: dict[str, dict[str, Any]]
    entries: dict[str, list[Any]]


def read_tile_index(root: str | Path) -> TileIndex:
    """The tile section of the pool at ``root``; empty when there is no pool there yet."""
    root = Path(root)
    if not (root / MANIFEST).is_file():
        return TileIndex({}, {})
    tiles = _read_manifest(root).tiles
    return TileIndex(dict(tiles.get("packs", {})), dict(tiles.get("index", {})))


def write_tile_index(root: str | Path, index: TileIndex) -> None:
    """Record ``index`` in the pool's manifest (created if absent), keeping its blocks; atomic, under
    the build lock so a block build and a tile flush never lose each other's records."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / LOCK)):
        manifest = _read_manifest(root) if (root / MANIFEST).is_file() else _Manifest()
        manifest.tiles = {"packs": index.packs, "index": index.entries}
        write_bytes(root / MANIFEST, manifest.to_bytes())


def _verify_tiles(root: Path, manifest: _Manifest) -> list[PoolProblem]:
    """Every missing, truncated or altered tile pack; an altered pack names each tile that changed."""
    from stitching.multitask.tiles import tile_digest  # numpy only; the multi-task granularity's digest

    index = TileIndex(manifest.tiles.get("packs", {}), manifest.tiles.get("index", {}))
    by_pack: dict[str, list[tuple[str, list[Any]]]] = {}
    for dig, entry in index.entries.items():
        by_pack.setdefault(str(entry[0]), []).append((dig, entry))
    problems: list[PoolProblem] = []
    for name in sorted(set(by_pack) - set(index.packs)):
        problems.append(PoolProblem(str(root / MANIFEST), f"tiles name the unrecorded pack {name}"))
    for name, info in sorted(index.packs.items()):
        path = root / TILES / name
        if not path.is_file():
            problems.append(PoolProblem(str(path), "missing"))
            continue
        data = path.read_bytes()
        if len(data) < info["bytes"]:
            problems.append(PoolProblem(str(path), f"truncated: {len(data)} bytes, manifest says {info['bytes']}"))
            continue
        if file_sha256(data) == info["sha256"]:
            continue
        changed = []
        for dig, (_, offset, nbytes, dtype, shape) in by_pack.get(name, []):
            tile = np.frombuffer(data[offset : offset + nbytes], dtype=ST_DTYPES[dtype]).reshape(shape)
            if tile_digest(tile) != dig:
                changed.append(f"tile {dig[:12]} at byte {offset}")
        what = ", ".join(changed) if changed else "bytes outside the tiles (header or size)"
        problems.append(PoolProblem(str(path), f"altered: {what} does not match the recorded sha256"))
    return problems


class Pool:
    """A pool directory, read side. Build one with :func:`build_pool`.

    ``factories``: the in-memory model factories its user models' blocks are rebuilt with.
    """

    def __init__(self, root: str | Path, factories: Factories | None = None) -> None:
        self.root = Path(root)
        self.factories = factories
        self._manifest = _read_manifest(self.root)
        self._blocks = [Block.from_json(b) for b in self._manifest.blocks]

    def models(self) -> list[str]:
        return list(self._manifest.models)

    def model_info(self, model: str) -> dict[str, Any]:
        """Zoo name or factory, partition (unit ranges and names), variants, checkpoint bytes, chain check of ``model``."""
        if model not in self._manifest.models:
            raise ValueError(f"model {model!r} is not in the pool {self.root}; it holds: {', '.join(self.models()) or 'nothing'}")
        return dict(self._manifest.models[model])

    def variants(self, model: str) -> list[str]:
        return list(self.model_info(model)["variants"])

    def positions(self, model: str) -> int:
        return len(self.model_info(model)["cut"])

    def blocks(self, model: str | None = None, variant: str | None = None, position: int | None = None) -> list[Block]:
        return [
            b
            for b in self._blocks
            if (model is None or b.model == model)
            and (variant is None or b.variant == variant)
            and (position is None or b.position == position)
        ]

    def block(self, model: str, position: int, variant: str) -> Block:
        found = self.blocks(model, variant, position)
        if not found:
            raise ValueError(f"no block at position {position} of variant {variant!r} of model {model!r}")
        return found[0]

    def path(self, digest_: str) -> Path:
        return self.root / BLOCKS / f"{digest_}.safetensors"

    def load_state(self, digest_: str) -> dict[str, torch.Tensor]:
        """The block's tensors, after checking every byte of its file against the manifest
        (:class:`PoolError` naming the file and what differs otherwise)."""
        info = self._manifest.files.get(digest_)
        if info is None:
            raise ValueError(f"no block with digest {digest_} in {self.root}")
        path = self.path(digest_)
        try:
            data = path.read_bytes()
        except OSError as err:
            raise PoolError(f"{path}: unreadable ({err.strerror or err}); run `sparseloom pool build` to "
                            "rebuild it") from None
        recorded = info.get("sha256")
        if recorded is None or file_sha256(data) != recorded:
            problem = _what_differs(digest_, info, data)
            if problem is not None:
                raise PoolError(f"{path}: {problem}; run `sparseloom pool build` to rebuild it")
        return load(data)

    def unit_specs(self, digest_: str) -> list[dict[str, Any]]:
        return list(self._manifest.files[digest_]["units"])

    def load_module(self, digest_: str) -> BlockModule:
        """A runnable block rebuilt from the manifest's unit specs and the block's safetensors file."""
        return BlockModule.rebuild(self.unit_specs(digest_), self.load_state(digest_), self.factories)

    def file_bytes(self, digest_: str) -> int:
        return int(self._manifest.files[digest_]["bytes"])

    def tiles(self) -> TileIndex:
        """The pool's tiles (the multi-task granularity): packs and per-tile entries."""
        return TileIndex(dict(self._manifest.tiles.get("packs", {})), dict(self._manifest.tiles.get("index", {})))

    def size(self, model: str | None = None) -> PoolSize:
        """Dedup figures for one model or the whole pool."""
        refs = self.blocks(model)
        unique = {b.digest for b in refs}
        models = [model] if model is not None else self.models()
        ckpt = sum(sum(self._manifest.models[m]["checkpoint_bytes"].values()) for m in models)
        return PoolSize(len(refs), len(unique), sum(self.file_bytes(d) for d in unique), int(ckpt))


def verify(root: str | Path) -> list[PoolProblem]:
    """Every missing, truncated or altered file of a pool, each named with what differs (empty when
    it is sound): the tensors, the header metadata that rebuilds the module, or any other byte."""
    root = Path(root)
    try:
        manifest = _read_manifest(root)
    except ValueError as err:
        return [PoolProblem(str(root / MANIFEST), str(err))]
    problems: list[PoolProblem] = []
    for dig, info in manifest.files.items():
        path = root / BLOCKS / f"{dig}.safetensors"
        if not path.is_file():
            problems.append(PoolProblem(str(path), "missing"))
            continue
        problem = _what_differs(dig, info, path.read_bytes())
        if problem is not None:
            problems.append(PoolProblem(str(path), problem))
    known = set(manifest.files)
    for b in manifest.blocks:
        if b["digest"] not in known:
            problems.append(PoolProblem(str(root / MANIFEST), f"block {b['model']}/{b['variant']}/{b['position']} names an unknown file"))
    return problems + _verify_tiles(root, manifest)


def _requests_total(requests: Sequence[ModelRequest]) -> int:
    return sum(len(r.variants()) * (r.blocks or len(r.boundaries or ()) + 1) for r in requests)


def build_pool(
    root: str | Path,
    requests: Sequence[ModelRequest],
    cache_dir: Path | None = None,
    progress: bool = True,
    on_block: Callable[[Block], None] | None = None,
    factories: Factories | None = None,
    check: bool = False,
) -> Pool:
    """Build (or resume building) a pool holding every requested model variant.

    Blocks already recorded with a file of the recorded size are skipped, so running this
    again after an interruption finishes the job; ``check`` reads every recorded file first and
    rebuilds, with a :class:`PoolWarning`, those whose bytes differ. ``on_block`` is called after
    each block is durably recorded. ``factories``: in-memory model factories that
    requests name (see :data:`stitching.units.Factories`). Builds into one directory from several
    processes take turns on a file lock (``.build.lock``).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    names = [r.name for r in requests]
    if len(set(names)) != len(names):
        raise ValueError(f"model names must be unique in one pool build: {names}")
    if not check and (root / MANIFEST).is_file():
        # Complete already: nothing to write, so no lock either (a read-only pool still serves).
        done = _read_manifest(root)
        if all(_complete(root, done, r) for r in requests):
            return Pool(root, factories)
    # One writer at a time: a second build waits, then finds the first one's blocks and skips them.
    lock = FileLock(root / LOCK)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"waiting for another build of {root} to finish", file=sys.stderr)
        lock.acquire()
    try:
        (root / BLOCKS).mkdir(exist_ok=True)
        remove_stale(root, recursive=True)  # left by writers that were killed
        manifest = _read_manifest(root) if (root / MANIFEST).is_file() else _Manifest()
        if check:
            _drop_bad_files(root, manifest)
        with tqdm(total=_requests_total(requests), desc="pool build", unit="block", disable=not progress) as bar:
            for request in requests:
                _build_model(root, manifest, request, cache_dir, bar, on_block, factories)
    finally:
        lock.release()
    return Pool(root, factories)


def _drop_bad_files(root: Path, manifest: _Manifest) -> None:
    """Forget every block file whose bytes are not the recorded ones, with a warning, so it is rebuilt."""
    for dig, info in list(manifest.files.items()):
        path = root / BLOCKS / f"{dig}.safetensors"
        problem = _what_differs(dig, info, path.read_bytes()) if path.is_file() else "missing"
        if problem is not None:
            warnings.warn(f"{path}: {problem}; rebuilding it", PoolWarning, stacklevel=3)
            del manifest.files[dig]
            path.unlink(missing_ok=True)


def _file_ok(root: Path, manifest: _Manifest, dig: str) -> bool:
    path = root / BLOCKS / f"{dig}.safetensors"
    return dig in manifest.files and path.is_file() and path.stat().st_size == manifest.files[dig]["bytes"]


def _build_model(
    root: Path,
    manifest: _Manifest,
    request: ModelRequest,
    cache_dir: Path | None,
    bar: Any,
    on_block: Callable[[Block], None] | None,
    factories: Factories | None = None,
) -> None:
    if _complete(root, manifest, request):
        # Every block is already stored: skip loading and partitioning the model (seconds per model).
        bar.update(len(request.variants()) * len(manifest.models[request.name]["cut"]))
        return
    base = request.load(cache_dir, factories)
    cut = cut_model(base, request.blocks, request.boundaries)
    dense = split(base, cut)
    refit = _reconstruction(request)
    calibration = zoo.calibration(request.zoo, base, CALIBRATION_SIZE, cache_dir) if refit and request.zoo else None
    info = manifest.models.get(request.name)
    if info is not None and info.get("reconstruction") != refit:
        # Built another way (before reconstruction, or with other settings): every block is rebuilt.
        manifest.blocks = [b for b in manifest.blocks if b["model"] != request.name]
        info["checkpoint_bytes"], info["reconstruction"] = {}, refit
    ranges = [list(r) for r in cut.ranges]
    if info is not None and (info["base_model"] != request.base_model or info["cut"] != ranges):
        raise ValueError(
            f"the pool already holds a model {request.name!r} with another zoo model or partition; "
            "use another name or another pool directory"
        )
    chain_diff = check_chain(base, dense)
    if info is None:
        info = {
            "zoo": request.zoo,
            "factory": request.factory,
            "base_model": request.base_model,
            "accuracy_known": request.zoo is not None and zoo.entry(request.zoo).accuracy_known,
            "cut": ranges,
            "unit_names": [list(base.unit_names[a:b]) for a, b in cut.ranges],
            "variants": [],
            "checkpoint_bytes": {},
            "chain_max_abs_diff": chain_diff,
            "reconstruction": refit,
        }
        manifest.models[request.name] = info
    # Inputs of each position: the dense chain's activations on the example input; its outputs are
    # the interface every variant of the position must keep.
    outputs: list[tuple[torch.Tensor, ...]] = []
    with torch.no_grad():
        for block in dense:
            outputs.append(block.run(*(outputs[-1] if outputs else base.example_inputs)))
    inputs = [base.example_inputs, *outputs[:-1]]
    interfaces = [tuple(TensorSpec.of(t) for t in out) for out in outputs]
    # The calibration batch at each position, through the dense chain like the example input (in the
    # standard layout and on one thread: the refitted weights, so the digests, follow these bits).
    calibrated: list[tuple[torch.Tensor, ...] | None] = [None] * len(dense)
    if calibration is not None:
        calibrated[0] = standard(calibration)
        with torch.no_grad(), one_thread():
            for position in range(1, len(dense)):
                calibrated[position] = dense[position - 1].run(*calibrated[position - 1])  # type: ignore[misc]
    done = {(b["variant"], b["position"]): b for b in manifest.blocks if b["model"] == request.name}
    for recipe in request.variants():
        if recipe.name not in info["variants"]:
            info["variants"].append(recipe.name)
        digests: list[str] = []
        for position, block in enumerate(dense):
            bar.set_postfix_str(f"{request.name} {recipe.name} #{position}")
            old = done.get((recipe.name, position))
            if old is not None and _file_ok(root, manifest, old["digest"]):
                digests.append(old["digest"])
                bar.update(1)
                continue
            record = _store_block(root, manifest, request, base.unit_names, cut.ranges[position], position, recipe, block,
                                  inputs[position], interfaces[position], calibrated[position])
            if old is not None:
                manifest.blocks.remove(old)
            manifest.blocks.append(record.to_json())
            digests.append(record.digest)
            write_bytes(root / MANIFEST, manifest.to_bytes())
            bar.update(1)
            if on_block is not None:
                on_block(record)
        if recipe.name not in info["checkpoint_bytes"]:
            info["checkpoint_bytes"][recipe.name] = _checkpoint_bytes(root, digests)
            write_bytes(root / MANIFEST, manifest.to_bytes())
    if info.get("request") != _request_key(request):
        info["request"] = _request_key(request)
        write_bytes(root / MANIFEST, manifest.to_bytes())


def _reconstruction(request: ModelRequest) -> str | None:
    """How the model's pruned blocks are refitted, as recorded in the manifest: by least squares
    when its zoo entry has calibration data, else None (left as pruned)."""
    if request.zoo is None or zoo.entry(request.zoo).make_calibration is None:
        return None
    return f"least-squares, {CALIBRATION_SIZE} calibration inputs, ridge {RIDGE:g}"


def _request_key(request: ModelRequest) -> dict[str, Any]:
    """What decides a model's blocks besides its variants: recorded so a rebuild can be skipped."""
    return {"base_model": request.base_model, "blocks": request.blocks,
            "boundaries": None if request.boundaries is None else list(request.boundaries),
            "reconstruction": _reconstruction(request)}


def _complete(root: Path, manifest: _Manifest, request: ModelRequest) -> bool:
    """True when the manifest holds every block of ``request``, built from the same model and partition."""
    info = manifest.models.get(request.name)
    if info is None or info.get("request") != _request_key(request):
        return False
    done = {(b["variant"], b["position"]): b["digest"] for b in manifest.blocks if b["model"] == request.name}
    return all(
        recipe.name in info["checkpoint_bytes"]
        and all((recipe.name, p) in done and _file_ok(root, manifest, done[(recipe.name, p)])
                for p in range(len(info["cut"])))
        for recipe in request.variants()
    )


def _store_block(
    root: Path,
    manifest: _Manifest,
    request: ModelRequest,
    unit_names: tuple[str, ...],
    unit_range: tuple[int, int],
    position: int,
    recipe: Recipe,
    dense_block: BlockModule,
    inputs: tuple[torch.Tensor, ...],
    interface: tuple[TensorSpec, ...],
    calibration: tuple[torch.Tensor, ...] | None,
) -> Block:
    block = prune_block(dense_block, recipe, inputs)
    if calibration is not None and recipe.pattern not in ("dense", "int8"):
        block = reconstruct(dense_block, block, calibration)
    stats, _ = measure(block, inputs)
    if stats.outputs != interface:
        raise ValueError(
            f"{recipe.name} changed the interface of block {position} of {request.name}: "
            f"{', '.join(map(str, stats.outputs))} instead of {', '.join(map(str, interface))}"
        )
    state = {k: v.detach().contiguous() for k, v in block.state_dict().items()}
    specs = block.unit_specs()
    dig = digest(specs, state)
    if not _file_ok(root, manifest, dig):
        data = save(state, metadata={"digest": dig, "units": json.dumps(specs)})
        write_bytes(root / BLOCKS / f"{dig}.safetensors", data)
        manifest.files[dig] = {"bytes": len(data), "sha256": file_sha256(data), "units": specs}
    return Block(
        model=request.name,
        base_model=request.base_model,
        position=position,
        variant=recipe.name,
        units=unit_names[unit_range[0] : unit_range[1]],
        inputs=stats.inputs,
        outputs=stats.outputs,
        flops=stats.flops,
        effective_flops=stats.effective_flops,
        param_bytes=stats.param_bytes,
        activation_bytes=stats.activation_bytes,
        pattern=recipe.pattern,
        level=recipe.sparsity_level,
        nonzero_fraction=stats.nonzero_fraction,
        digest=dig,
    )


def _checkpoint_bytes(root: Path, digests: Sequence[str]) -> int:
    """Size of the whole-model safetensors checkpoint of one variant (what a pool-less store would keep)."""
    merged: dict[str, torch.Tensor] = {}
    for position, dig in enumerate(digests):
        for name, t in load_file(root / BLOCKS / f"{dig}.safetensors").items():
            merged[f"blocks.{position}.{name}"] = t
    return len(save(merged))

