"""Pool: content addressing and dedup, rebuild from disk, corruption detection, resume."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from stitching.pool import Block, ModelRequest, Pool, PoolError, PoolWarning, build_pool, digest, verify
from stitching.prune import Recipe

SMALL_RECIPES = (Recipe("structured", 0.5), Recipe("unstructured", 0.9), Recipe("int8"))  # as in conftest


def test_every_block_rebuilds_from_manifest_and_file(digits_pool: Pool) -> None:
    for block in digits_pool.blocks():
        module = digits_pool.load_module(block.digest)
        state = {k: v.contiguous() for k, v in module.state_dict().items()}
        assert digest(digits_pool.unit_specs(block.digest), state) == block.digest
        x = tuple(torch.zeros(s.shape, dtype=getattr(torch, s.dtype)) for s in block.inputs)
        out = module.run(*x)
        assert tuple((tuple(o.shape), str(o.dtype).removeprefix("torch.")) for o in out) == tuple(
            (s.shape, s.dtype) for s in block.outputs
        )


def test_structured_blocks_are_smaller_on_disk(digits_pool: Pool) -> None:
    for p in range(4):
        dense = digits_pool.block("digits_cnn", p, "dense")
        assert digits_pool.block("digits_cnn", p, "structured-0.5").param_bytes < dense.param_bytes
        assert digits_pool.block("digits_cnn", p, "int8").param_bytes < dense.param_bytes / 2


def test_identical_blocks_are_stored_once(digits_pool: Pool, cache_dir: Path, tmp_path: Path) -> None:
    requests = [
        ModelRequest("task_a", "digits_cnn", 4, None, (Recipe("structured", 0.5), Recipe("int8"))),
        ModelRequest("task_b", "digits_cnn", 4, None, (Recipe("structured", 0.5), Recipe("unstructured", 0.9))),
    ]
    pool = build_pool(tmp_path / "p", requests, cache_dir, progress=False)
    size = pool.size()
    assert size.block_refs == 24 and size.unique_blocks == 16
    assert len(list((tmp_path / "p" / "blocks").iterdir())) == 16
    assert size.pool_bytes < 0.75 * size.checkpoint_bytes
    assert {b.digest for b in pool.blocks("task_a", "dense")} == {b.digest for b in pool.blocks("task_b", "dense")}


def _copy(pool: Pool, tmp_path: Path) -> tuple[Path, list[Path]]:
    root = tmp_path / "copy"
    shutil.copytree(pool.root, root)
    assert verify(root) == []
    return root, sorted((root / "blocks").iterdir())


def test_verify_names_a_missing_file(digits_pool: Pool, tmp_path: Path) -> None:
    root, files = _copy(digits_pool, tmp_path)
    files[3].unlink()
    problems = verify(root)
    assert [(Path(p.path).name, p.problem) for p in problems] == [(files[3].name, "missing")]


def test_verify_names_a_truncated_file(digits_pool: Pool, tmp_path: Path) -> None:
    root, files = _copy(digits_pool, tmp_path)
    data = files[5].read_bytes()
    files[5].write_bytes(data[: len(data) // 2])
    problems = verify(root)
    assert len(problems) == 1 and problems[0].path.endswith(files[5].name) and "truncated" in problems[0].problem


def test_verify_names_an_altered_file(digits_pool: Pool, tmp_path: Path) -> None:
    root, files = _copy(digits_pool, tmp_path)
    data = bytearray(files[7].read_bytes())
    data[-3] ^= 0x55  # same size, one weight byte changed
    files[7].write_bytes(bytes(data))
    problems = verify(root)
    assert len(problems) == 1 and problems[0].path.endswith(files[7].name) and "altered" in problems[0].problem


def test_verify_reports_a_missing_manifest(tmp_path: Path) -> None:
    problems = verify(tmp_path)
    assert len(problems) == 1 and "manifest.json is missing" in problems[0].problem
    with pytest.raises(ValueError, match="not a pool"):
        Pool(tmp_path)


class Interrupted(Exception):
    pass


def test_an_interrupted_build_resumes(digits_pool: Pool, cache_dir: Path, tmp_path: Path) -> None:
    request = ModelRequest("digits_cnn", "digits_cnn", 4, None, SMALL_RECIPES)
    written: list[Block] = []

    def stop_after_five(block: Block) -> None:
        written.append(block)
        if len(written) == 5:
            raise Interrupted

    root = tmp_path / "p"
    with pytest.raises(Interrupted):
        build_pool(root, [request], cache_dir, progress=False, on_block=stop_after_five)
    (root / "blocks" / ".leftover.safetensors.tmp").write_bytes(b"half a write")  # a killed atomic write
    assert len(Pool(root).blocks()) == 5 and verify(root) == []
    first = {b.digest: (root / "blocks" / f"{b.digest}.safetensors").stat().st_mtime_ns for b in written}

    resumed: list[Block] = []
    pool = build_pool(root, [request], cache_dir, progress=False, on_block=resumed.append)
    assert len(resumed) == 16 - 5, "blocks recorded before the interruption were rebuilt"
    assert verify(root) == [] and not list(root.rglob("*.tmp"))
    assert sorted(b.to_json().items().__repr__() for b in pool.blocks()) == sorted(
        b.to_json().items().__repr__() for b in digits_pool.blocks()
    )
    assert all((root / "blocks" / f"{d}.safetensors").stat().st_mtime_ns == t for d, t in first.items())


def test_a_pool_refuses_a_different_partition_under_the_same_name(digits_pool: Pool, cache_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "p"
    build_pool(root, [ModelRequest("m", "digits_cnn", 2)], cache_dir, progress=False)
    with pytest.raises(ValueError, match="another zoo model or partition"):
        build_pool(root, [ModelRequest("m", "digits_cnn", 4)], cache_dir, progress=False)


def test_a_complete_pool_is_not_rebuilt(cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "p"
    request = ModelRequest("m", "digits_cnn", 2, None, (Recipe("int8"),))
    build_pool(root, [request], cache_dir, progress=False)

    def no_load(self: ModelRequest, *args: object) -> None:
        raise AssertionError("a complete model was loaded again")

    monkeypatch.setattr(ModelRequest, "load", no_load)
    again = build_pool(root, [request], cache_dir, progress=False)
    assert len(again.blocks("m")) == 4
    # Another partition or a missing file still goes the slow way (and so reaches load).
    with pytest.raises(AssertionError, match="loaded again"):
        build_pool(root, [ModelRequest("m", "digits_cnn", 3, None, (Recipe("int8"),))], cache_dir, progress=False)
    next((root / "blocks").glob("*.safetensors")).unlink()
    with pytest.raises(AssertionError, match="loaded again"):
        build_pool(root, [request], cache_dir, progress=False)


def test_pool_blocks_export_with_torch_export(digits_pool: Pool) -> None:
    # The backends compile blocks through torch.export; shrunk and int8 blocks must export too.
    for variant in ("structured-0.5", "int8"):
        block = digits_pool.block("digits_cnn", 1, variant)
        module = digits_pool.load_module(block.digest)
        x = torch.randn(block.inputs[0].shape)
        exported = torch.export.export(module, (x,))
        assert torch.allclose(exported.module()(x), module(x))


_KILLED_BUILD = """
import sys, time
from pathlib import Path
from stitching.pool import ModelRequest, build_pool
from stitching.prune import Recipe
request = ModelRequest("digits_cnn", "digits_cnn", 4, None, (Recipe("structured", 0.5), Recipe("unstructured", 0.9), Recipe("int8")))
build_pool(Path(sys.argv[1]), [request], Path(sys.argv[2]), progress=False, on_block=lambda b: time.sleep(0.2))
"""


def test_a_killed_build_process_resumes(digits_pool: Pool, cache_dir: Path, tmp_path: Path) -> None:
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    import stitching

    root = tmp_path / "p"
    env = {**os.environ, "PYTHONPATH": str(Path(stitching.__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_BUILD, str(root), str(cache_dir)], env=env)
    deadline = time.monotonic() + 60
    recorded = 0
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            recorded = len(json.loads((root / "manifest.json").read_text())["blocks"])
        except (OSError, ValueError):
            recorded = 0
        if recorded >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 3 <= recorded < 16, "the build was not killed midway"
    assert verify(root) == []
    pool = build_pool(root, [ModelRequest("digits_cnn", "digits_cnn", 4, None, SMALL_RECIPES)], cache_dir, progress=False)
    assert verify(root) == [] and len(pool.blocks()) == 16
    assert {b.digest for b in pool.blocks()} == {b.digest for b in digits_pool.blocks()}


def _alter_metadata(path: Path) -> None:
    """Change one digit inside the header metadata that rebuilds the module: same length, same tensors."""
    data = bytearray(path.read_bytes())
    size = int.from_bytes(data[:8], "little")
    start = data.index(b'"units"', data.index(b'"__metadata__"', 8, 8 + size), 8 + size)
    at = next(i for i in range(start, 8 + size) if chr(data[i]).isdigit())
    data[at] = ord("7") if data[at] != ord("7") else ord("3")
    path.write_bytes(bytes(data))


def test_a_same_length_metadata_change_fails_verify_and_is_never_served(digits_pool: Pool, tmp_path: Path) -> None:
    root, files = _copy(digits_pool, tmp_path)
    before = files[2].stat().st_size
    _alter_metadata(files[2])
    assert files[2].stat().st_size == before
    problems = verify(root)
    assert [Path(p.path).name for p in problems] == [files[2].name]
    assert "header metadata" in problems[0].problem and "'units'" in problems[0].problem
    with pytest.raises(PoolError, match=files[2].name):
        Pool(root).load_module(files[2].stem)


def test_any_other_changed_header_byte_fails_verify(digits_pool: Pool, tmp_path: Path) -> None:
    # The header's padding is neither tensors nor metadata; the file's recorded sha256 still covers it.
    root, files = _copy(digits_pool, tmp_path)
    data = bytearray(files[4].read_bytes())
    size = int.from_bytes(data[:8], "little")
    header = data[8 : 8 + size]
    assert header.rstrip(b" ") != header, "no header padding to alter in this file"
    data[8 + size - 1] = ord("\t")  # whitespace: the JSON still parses the same
    files[4].write_bytes(bytes(data))
    problems = verify(root)
    assert [Path(p.path).name for p in problems] == [files[4].name] and "sha256" in problems[0].problem


def test_a_checked_build_rebuilds_a_bad_file_with_a_warning(digits_pool: Pool, cache_dir: Path, tmp_path: Path) -> None:
    root, files = _copy(digits_pool, tmp_path)
    _alter_metadata(files[6])
    request = ModelRequest("digits_cnn", "digits_cnn", 4, None, SMALL_RECIPES)
    with pytest.warns(PoolWarning, match=files[6].name):
        build_pool(root, [request], cache_dir, progress=False, check=True)
    assert verify(root) == []
    # The same tensors and metadata (not the same bytes: safetensors writes metadata keys in hash order).
    from safetensors import safe_open

    original = digits_pool.root / "blocks" / files[6].name
    with safe_open(str(files[6]), "pt") as new, safe_open(str(original), "pt") as old:
        assert new.metadata() == old.metadata() and set(new.keys()) == set(old.keys())
        assert all(torch.equal(new.get_tensor(k), old.get_tensor(k)) for k in old.keys())  # noqa: SIM118


_BUILD = """
import sys
from pathlib import Path
from stitching.pool import ModelRequest, build_pool
from stitching.prune import Recipe
request = ModelRequest("digits_cnn", "digits_cnn", 4, None, (Recipe("structured", 0.5), Recipe("unstructured", 0.9), Recipe("int8")))
build_pool(Path(sys.argv[1]), [request], Path(sys.argv[2]), progress=False)
"""


def test_two_processes_building_one_pool_leave_a_pool_that_verifies(digits_pool: Pool, cache_dir: Path,
                                                                    tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    import stitching

    root = tmp_path / "p"
    env = {**os.environ, "PYTHONPATH": str(Path(stitching.__file__).parents[1])}
    procs = [subprocess.Popen([sys.executable, "-c", _BUILD, str(root), str(cache_dir)], env=env,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert verify(root) == []
    pool = Pool(root)
    assert {b.digest for b in pool.blocks()} == {b.digest for b in digits_pool.blocks()} and len(pool.blocks()) == 16
