"""Linking compiled blocks: the host toolchain, or zig's bundled clang for cross targets.

TVM's ``export_library`` takes an ``fcompile`` callable; for another
architecture we hand it :func:`zig_linker`, which runs ``python -m ziglang cc``
(the ``ziglang`` wheel) with the right ``-target``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

# TVM mtriple prefix -> zig target triple
_ZIG_TRIPLES: dict[str, str] = {
    "aarch64": "aarch64-linux-gnu",
    "arm64": "aarch64-linux-gnu",
    "armv7": "arm-linux-gnueabihf",
    "hexagon": "hexagon-linux-musl",
    "riscv64": "riscv64-linux-gnu",
    "x86_64": "x86_64-linux-gnu",
}

# ELF e_machine numbers of the architectures we emit
ELF_MACHINE: dict[str, int] = {"x86_64": 62, "aarch64": 183, "arm": 40, "hexagon": 164, "riscv64": 243}


@dataclass(frozen=True)
class ElfInfo:
    """The header fields that say what a binary is for."""

    elf_class: int  # 1 = 32-bit, 2 = 64-bit
    e_type: int  # 1 relocatable object, 3 shared object
    e_machine: int


def zig_available() -> bool:
    return importlib.util.find_spec("ziglang") is not None


def zig_triple(mtriple: str) -> str | None:
    """The zig target for a TVM ``mtriple``, or None when we know of none."""
    arch = mtriple.split("-", 1)[0]
    return _ZIG_TRIPLES.get(arch)


def zig_linker(triple: str) -> Callable[..., None]:
    """An ``fcompile`` for ``export_library`` that links shared objects for ``triple`` with zig."""

    def _fcompile(output: str, objects: Sequence[str], options: Sequence[str] | None = None) -> None:
        cmd = [sys.executable, "-m", "ziglang", "cc", "-target", triple, "-shared", "-fPIC", "-o", output]
        cmd += list(objects) + list(options or [])
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"zig link for {triple} failed: {done.stderr.strip()[-2000:]}")

    _fcompile.output_format = "so"  # type: ignore[attr-defined]
    return _fcompile


def read_elf_header(path: Path) -> ElfInfo:
    """Parse the ELF identification and machine fields of ``path``."""
    head = path.read_bytes()[:20]
    if head[:4] != b"\x7fELF":
        raise ValueError(f"{path} is not an ELF file")
    order: Literal["little", "big"] = "little" if head[5] == 1 else "big"
    return ElfInfo(
        elf_class=head[4],
        e_type=int.from_bytes(head[16:18], order),
        e_machine=int.from_bytes(head[18:20], order),
    )
