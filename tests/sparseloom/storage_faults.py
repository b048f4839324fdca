"""Run a CLI command on a full or read-only cache, inside a user and mount namespace.

``python -m tests.sparseloom.storage_faults {full|readonly} CACHE OUT -- ARGV...`` must run under
``unshare --user --map-root-user --mount``: it mounts, in that private namespace only, a tmpfs
holding a copy of CACHE with 64 KB to spare (``full``) or CACHE itself read-only (``readonly``),
runs ``sparseloom ARGV`` on it, and prints JSON: the exit code, stderr, whether every file that
was there before is byte for byte the same, and what :func:`tests.sparseloom.killing.torn` finds.
The namespace ends with the process, so nothing is mounted on the machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.sparseloom.killing import torn

SPARE_KB = 64


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


def _size_kb(root: Path) -> int:
    # tmpfs counts whole pages per file, so round each file up to 4 KB.
    return sum(-(-p.stat().st_size // 4096) * 4 for p in root.rglob("*") if p.is_file()) + 4 * sum(
        1 for p in root.rglob("*") if p.is_dir())


def main(argv: list[str]) -> int:
    mode, cache, out = argv[0], Path(argv[1]), Path(argv[2])
    command = argv[argv.index("--") + 1 :]
    if mode == "full":
        source = cache.with_name(cache.name + "-source")
        shutil.copytree(cache, source)
        size = _size_kb(source) + SPARE_KB
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}k", "tmpfs", str(cache)], check=True)
        shutil.copytree(source, cache, dirs_exist_ok=True)
    else:
        subprocess.run(["mount", "--bind", str(cache), str(cache)], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(cache)], check=True)
    before = _digests(cache)
    proc = subprocess.run([sys.executable, "-m", "sparseloom.cli", *command], capture_output=True, text=True,
                          check=False, env={**os.environ, "SPARSELOOM_CACHE": str(cache)})
    after = _digests(cache)
    bad, temporaries = torn([cache, out])
    print(json.dumps({
        "code": proc.returncode, "stderr": proc.stderr[-2000:],
        "lost_or_changed": sorted(k for k in before if after.get(k) != before[k]),
        "torn": bad, "temporaries": temporaries,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
