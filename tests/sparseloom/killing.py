"""Kill a CLI command with SIGKILL at seeded random points, then look for torn files.

Commands run as real processes forked from a server that has imported the CLI once (the
``forkserver`` start method), so each run pays for the command's own work, not for importing
torch and TVM. :func:`torn` reads back every file a run may have written, the way the next run
would: pools through ``verify``, sealed cache records through their digests, every other JSON,
PNG and safetensors file through its parser. Temporaries of killed writers are counted apart:
they are never read, and the next write of the same file removes them.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import signal
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

_CTX = mp.get_context("forkserver")
# Everything the four commands import, so a run starts in milliseconds.
_CTX.set_forkserver_preload(["sparseloom.cli", "sparseloom.sim", "sparseloom.assemble", "sparseloom.verdict",
                             "backends.profiler", "stitching.pool", "sparseloom.multitask.study", "matplotlib.pyplot",
                             "PIL.Image", "sympy", "torch", "torch._dynamo", "torch.export"])


def _command(argv: Sequence[str], env: dict[str, str]) -> None:
    os.environ.update(env)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    from sparseloom.cli import main

    code = main(list(argv))
    sys.stdout.flush()
    os._exit(code)


def run(argv: Sequence[str], env: dict[str, str], kill_after_s: float | None = None) -> int | None:
    """The command's exit code; None when it was killed (SIGKILL after ``kill_after_s``)."""
    return run_counting_orphans(argv, env, kill_after_s)[0]


def run_counting_orphans(argv: Sequence[str], env: dict[str, str],
                         kill_after_s: float | None = None) -> tuple[int | None, int]:
    """(the exit code or None when killed, how many of its child processes outlived it by 5 s)."""
    proc = _CTX.Process(target=_command, args=(list(argv), env))
    proc.start()
    proc.join(kill_after_s)
    if not (proc.is_alive() and proc.pid is not None):
        return proc.exitcode, 0
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    try:
        os.kill(proc.pid, signal.SIGKILL)
    except ProcessLookupError:  # it finished between the check and the kill
        proc.join()
        return proc.exitcode, 0
    proc.join()
    _, alive = psutil.wait_procs(children, timeout=5.0)
    for orphan in alive:  # do not leave them behind the test either
        orphan.kill()
    return None, len(alive)


def timed(argv: Sequence[str], env: dict[str, str]) -> float:
    """Seconds one uninterrupted run takes (it must succeed)."""
    start = time.perf_counter()
    code = run(argv, env)
    assert code == 0, f"{' '.join(argv)} exited {code}"
    return time.perf_counter() - start


_PNG_END = b"IEND\xaeB`\x82"


def _files(roots: Iterable[Path]) -> list[Path]:
    return sorted(p for root in roots if root.exists() for p in root.rglob("*") if p.is_file())


def torn(roots: Iterable[Path]) -> tuple[list[str], int]:
    """(every file under ``roots`` that does not read back whole, with why; temporaries of killed writers)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    from stitching import sealed
    from stitching.pool import verify

    bad: list[str] = []
    temporaries = 0
    files = _files(roots)
    for path in files:
        name = path.name
        if ".tmp" in name and name.startswith("."):
            temporaries += 1
        elif name == "manifest.json" and ((path.parent / "blocks").is_dir() or (path.parent / "tiles").is_dir()):
            bad += [str(p) for p in verify(path.parent)]
        elif name.endswith(".json"):
            with warnings.catch_warnings():
                warnings.simplefilter("error", sealed.SealWarning)
                try:
                    doc = json.loads(path.read_text())
                    if isinstance(doc, dict) and set(doc) == {"sealed", "data"}:
                        sealed.read(path)
                except (ValueError, sealed.SealWarning) as err:
                    bad.append(f"{path}: {err}")
        elif name.endswith(".png") and not path.read_bytes().endswith(_PNG_END):
            bad.append(f"{path}: a PNG without its end chunk")
        elif name.endswith(".safetensors") and "blocks" not in path.parts:
            try:
                load_file(str(path))
            except (SafetensorError, OSError, ValueError) as err:
                bad.append(f"{path}: {err}")
    return bad, temporaries


@dataclass
class Campaign:
    """What a run of kill points found."""

    command: str
    points: int = 0
    killed: int = 0  # points that landed before the command finished
    torn_after_kill: list[str] = field(default_factory=list)
    reruns_ok: int = 0
    torn_after_rerun: list[str] = field(default_factory=list)
    temporaries_after_rerun: int = 0
    orphans: int = 0  # child processes that outlived a killed command
    seconds: float = 0.0

    def line(self) -> str:
        return (f"{self.command}: {self.points} SIGKILL points ({self.killed} mid-run), torn after a kill "
                f"{len(self.torn_after_kill)}, next run completed {self.reruns_ok}/{self.points}, torn after it "
                f"{len(self.torn_after_rerun)}, leftover temporaries {self.temporaries_after_rerun}, "
                f"orphaned processes {self.orphans}, {self.seconds:.0f} s")


def campaign(command: str, argv: Sequence[str], env: dict[str, str], prepare: Callable[[], None],
             roots: Sequence[Path], points: int, seed: int, span_s: float) -> Campaign:
    """``points`` times: ``prepare()`` the starting state, run ``argv`` and SIGKILL it at a seeded
    uniform time in [0, ``span_s``), look for torn files, run it again to completion and look again."""
    rng = random.Random(seed)
    out = Campaign(command)
    start = time.perf_counter()
    for _ in range(points):
        prepare()
        out.points += 1
        code, orphans = run_counting_orphans(argv, env, kill_after_s=rng.uniform(0.0, span_s))
        out.killed += code is None
        out.orphans += orphans
        found, _ = torn(roots)
        out.torn_after_kill += found
        if run(argv, env) == 0:
            out.reruns_ok += 1
        found, temporaries = torn(roots)
        out.torn_after_rerun += found
        out.temporaries_after_rerun += temporaries
    out.seconds = time.perf_counter() - start
    return out
