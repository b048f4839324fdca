"""``sparseloom pool build|ls|verify``: build, list and check a pool of blocks."""

from __future__ import annotations

import argparse
import json
import sys
import typing
from pathlib import Path
from typing import TYPE_CHECKING

from sparseloom.errors import InputError, Complaint
from sparseloom.workload import ZooName, load_workload

if TYPE_CHECKING:  # torch loads only when a pool command runs, not for every CLI call
    from stitching.pool import ModelRequest, Pool

ZOO_NAMES: tuple[str, ...] = typing.get_args(ZooName)

DEFAULT_VARIANTS = "structured-0.3,structured-0.5,structured-0.7,unstructured-0.5,unstructured-0.9,2:4,int8"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser("pool", help="build, list and verify pools of blocks")
    psub = p.add_subparsers(dest="pool_command", metavar="SUBCOMMAND", parser_class=type(p))
    psub.required = True

    b = psub.add_parser(
        "build",
        help="partition, prune and store a model's variants",
        description="Build (or resume building) a pool from a workload file's models or one zoo model name.",
    )
    b.add_argument("source", metavar="WORKLOAD_OR_MODEL", help=f"workload YAML, or a zoo model: {', '.join(ZOO_NAMES)}")
    b.add_argument("--out", required=True, type=Path, metavar="DIR", help="pool directory")
    b.add_argument("--blocks", type=int, default=4, help="blocks per model, for a zoo model name (default 4)")
    b.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"for a zoo model name (default {DEFAULT_VARIANTS})")
    b.add_argument("--cache", type=Path, default=None, help="cache for trained zoo weights ($SPARSELOOM_CACHE or ~/.cache/sparseloom)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.set_defaults(run=run_build)

    ls = psub.add_parser("ls", help="list the models, variants and blocks of a pool")
    ls.add_argument("dir", type=Path, metavar="DIR")
    ls.add_argument("--json", action="store_true", help="print the blocks as JSON")
    ls.set_defaults(run=run_ls)

    v = psub.add_parser("verify", help="check every block file (exit 2 naming each bad file)")
    v.add_argument("dir", type=Path, metavar="DIR")
    v.add_argument("--json", action="store_true", help="print the result as JSON")
    v.set_defaults(run=run_verify)


def stitching_error(err: ValueError, path: str, expected: str) -> InputError:
    """A lower package's ValueError as the one user-facing error type."""
    if isinstance(err, InputError):
        return err
    return InputError([Complaint(path=path, expected=expected, found=str(err))])


def requests_from(args: argparse.Namespace) -> list[ModelRequest]:
    from sparseloom.assemble import model_request
    from stitching.pool import ModelRequest
    from stitching.prune import parse_recipe

    source = str(args.source)
    if source in ZOO_NAMES:
        try:
            recipes = tuple(parse_recipe(n.strip()) for n in args.variants.split(",") if n.strip())
        except ValueError as err:
            raise stitching_error(err, "--variants", "variant names such as structured-0.5, block16-0.7, 2:4, int8") from None
        return [ModelRequest(source, source, blocks=args.blocks, recipes=recipes)]
    if not Path(source).is_file():
        raise InputError(
            [Complaint("WORKLOAD_OR_MODEL", f"a workload YAML file or a zoo model ({', '.join(ZOO_NAMES)})", repr(source))]
        )
    workload = load_workload(source)
    requests: list[ModelRequest] = []
    problems: list[Complaint] = []
    for i, spec in enumerate(workload.models):
        try:
            requests.append(model_request(spec))
        except ValueError as err:
            problems.append(Complaint(f"models[{i}]", "a model that can be pooled", str(err), source))
    if problems:
        raise InputError(problems)
    if not requests:
        raise InputError([Complaint("models", "at least one model", "none", source)])
    return requests


def run_build(args: argparse.Namespace) -> int:
    from stitching.pool import build_pool

    requests = requests_from(args)
    try:
        pool = build_pool(args.out, requests, args.cache, progress=not args.no_progress, check=True)
    except ValueError as err:
        raise stitching_error(err, str(args.source), "models that can be partitioned and pruned as asked") from None
    size = pool.size()
    print(
        f"{args.out}: {len(pool.models())} model(s), {size.unique_blocks} unique of {size.block_refs} blocks, "
        f"{size.pool_bytes / 1e6:.2f} MB (whole-model checkpoints: {size.checkpoint_bytes / 1e6:.2f} MB)"
    )
    return 0


def open_pool(path: Path) -> Pool:
    from stitching.pool import Pool

    try:
        return Pool(path)
    except ValueError as err:
        raise stitching_error(err, str(path), "a pool directory (made by 'sparseloom pool build')") from None


def run_ls(args: argparse.Namespace) -> int:
    pool = open_pool(args.dir)
    if args.json:
        print(json.dumps({
            "models": {m: pool.model_info(m) for m in pool.models()},
            "blocks": [b.to_json() for b in pool.blocks()],
            "size": pool.size().__dict__,
            "tiles": _tile_summary(pool),
        }, indent=1))
        return 0
    for model in pool.models():
        info = pool.model_info(model)
        print(f"{model} (zoo {info['zoo']}): {len(info['cut'])} blocks x {len(info['variants'])} variants")
        print(f"  {'pos':>3} {'variant':<18} {'digest':<12} {'MFLOPs':>9} {'eff.MFLOPs':>10} {'KB':>9} units")
        for b in sorted(pool.blocks(model), key=lambda b: (b.position, info["variants"].index(b.variant))):
            print(
                f"  {b.position:>3} {b.variant:<18} {b.digest[:12]} {b.flops / 1e6:>9.2f} "
                f"{b.effective_flops / 1e6:>10.2f} {b.param_bytes / 1e3:>9.1f} {'+'.join(b.units)}"
            )
    size = pool.size()
    print(f"{size.unique_blocks} unique of {size.block_refs} blocks: {size.pool_bytes / 1e6:.2f} MB on disk, "
          f"{size.checkpoint_bytes / 1e6:.2f} MB as whole-model checkpoints")
    tiles = _tile_summary(pool)
    if tiles["count"]:
        print(f"{tiles['count']} unique tiles in {tiles['packs']} pack(s): {tiles['bytes'] / 1e6:.2f} MB on disk")
    return 0


def _tile_summary(pool: Pool) -> dict[str, int]:
    index = pool.tiles()
    return {"count": len(index.entries), "packs": len(index.packs), "bytes": sum(int(p["bytes"]) for p in index.packs.values())}


def run_verify(args: argparse.Namespace) -> int:
    from stitching.pool import verify

    problems = verify(args.dir)
    if args.json:
        print(json.dumps({"ok": not problems, "problems": [p.__dict__ for p in problems]}, indent=1))
    elif not problems:
        print(f"{args.dir}: ok")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 2 if problems else 0
