"""Every malformed workload gets exit 2 and one located line per problem; never a traceback."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sparseloom import InputError, load_workload
from sparseloom.cli import main

SOC = """\
soc:
  name: board
  memory_mb: 4096
  storage_read_gbps: 1.5
  transfer: {latency_us: 20, bandwidth_gbps: 10}
  source: "test board"
  processors:
    - name: cpu
      kind: cpu
      target: {kind: llvm}
      peak_gops: {fp32: 100}
      memory_bandwidth_gbps: 20
      source: "measured"
"""

BODY = """\
models:
  - name: digits
    zoo: digits_cnn
    partition: {blocks: 4}
    variants:
      - {pattern: structured, levels: [0.3, 0.5]}
tasks:
  - name: classify
    model: digits
    slo: {latency_ms: 5, min_accuracy: 0.9}
    arrival: {process: poisson, rate_hz: 30}
scenario:
  name: s
  duration_s: 10
  memory_budget_mb: 512
"""

VALID = SOC + BODY

# (case id, file text, expected key path in the message, expected line or None)
CASES: list[tuple[str, str, str, int | None]] = [
    ("unknown top key", VALID + "taks: []\n", "taks", 29),
    ("typo in slo key", VALID.replace("latency_ms: 5", "latncy_ms: 5"), "tasks[0].slo.latncy_ms", 23),
    ("negative rate", VALID.replace("rate_hz: 30", "rate_hz: -3"), "tasks[0].arrival.rate_hz", 24),
    ("zero rate", VALID.replace("rate_hz: 30", "rate_hz: 0"), "tasks[0].arrival.rate_hz", 24),
    ("rate is text", VALID.replace("rate_hz: 30", "rate_hz: fast"), "tasks[0].arrival.rate_hz", 24),
    ("unknown model", VALID.replace("model: digits", "model: digitz"), "tasks[0].model", 22),
    ("accuracy above 1", VALID.replace("min_accuracy: 0.9", "min_accuracy: 1.5"), "tasks[0].slo.min_accuracy", 23),
    ("negative latency", VALID.replace("latency_ms: 5", "latency_ms: -5"), "tasks[0].slo.latency_ms", 23),
    ("latency huge", VALID.replace("latency_ms: 5", "latency_ms: 1e12"), "tasks[0].slo.latency_ms", 23),
    ("unknown process", VALID.replace("process: poisson", "process: gaussian"), "tasks[0].arrival", 24),
    ("periodic without period", VALID.replace("process: poisson, rate_hz: 30", "process: periodic"),
     "tasks[0].arrival.period_ms", 24),
    ("bursty missing fields", VALID.replace("process: poisson, rate_hz: 30", "process: bursty, rate_on_hz: 5"),
     "tasks[0].arrival.mean_on_s", 24),
    ("trace file missing", VALID.replace("process: poisson, rate_hz: 30", "process: trace, file: nope.csv"),
     "tasks[0].arrival.file", 24),
    ("unknown processor kind", VALID.replace("kind: cpu", "kind: tpu"), "soc.processors[0].kind", 9),
    ("memory negative", VALID.replace("memory_mb: 4096", "memory_mb: -1"), "soc.memory_mb", 3),
    ("missing source", VALID.replace('  source: "test board"\n', ""), "soc.source", 1),
    ("target without kind", VALID.replace("target: {kind: llvm}", "target: {mtriple: x86_64}"),
     "soc.processors[0]", 8),
    ("torch executor on gpu", VALID.replace("kind: cpu", "kind: gpu").replace(
        "target: {kind: llvm}", "target: {kind: cuda}\n      executor: torch"), "soc.processors[0]", 8),
    ("duplicate processor", VALID.replace("      source: \"measured\"\n",
                                          "      source: \"measured\"\n    - name: cpu\n      kind: cpu\n"
                                          "      target: llvm\n      peak_gops: {fp32: 1}\n"
                                          "      memory_bandwidth_gbps: 1\n      source: again\n"),
     "soc.processors[1].name", 14),
    ("unknown zoo model", VALID.replace("zoo: digits_cnn", "zoo: alexnet"), "models[0].zoo", 16),
    ("zoo and module", VALID.replace("zoo: digits_cnn", "zoo: digits_cnn\n    module: a.b:c"), "models[0]", 15),
    ("module without shape", VALID.replace("zoo: digits_cnn", "module: mypkg.nets:build"), "models[0]", 15),
    ("bad module path", VALID.replace("zoo: digits_cnn", "module: not a path\n    input_shape: [1]"),
     "models[0].module", 16),
    ("partition both", VALID.replace("partition: {blocks: 4}", "partition: {blocks: 4, boundaries: [a]}"),
     "models[0].partition", 17),
    ("partition zero", VALID.replace("partition: {blocks: 4}", "partition: {blocks: 0}"),
     "models[0].partition.blocks", 17),
    ("level out of range", VALID.replace("levels: [0.3, 0.5]", "levels: [0.3, 1.5]"),
     "models[0].variants[0].levels[1]", 19),
    ("structured without levels", VALID.replace(", levels: [0.3, 0.5]", ""), "models[0].variants[0]", 19),
    ("int8 with levels", VALID.replace("pattern: structured", "pattern: int8"), "models[0].variants[0]", 19),
    ("unknown pattern", VALID.replace("pattern: structured", "pattern: random"),
     "models[0].variants[0].pattern", 19),
    ("unknown importance", VALID.replace("levels: [0.3, 0.5]}", "levels: [0.3, 0.5], importance: l3}"),
     "models[0].variants[0].importance", 19),
    ("importance on a masked pattern", VALID.replace("pattern: structured", "pattern: unstructured").replace(
        "levels: [0.3, 0.5]}", "levels: [0.3, 0.5], importance: l2}"), "models[0].variants[0]", 19),
    ("duplicate task", VALID.replace("scenario:", "  - name: classify\n    model: digits\n"
                                     "    slo: {latency_ms: 5}\n    arrival: {process: poisson, rate_hz: 1}\nscenario:"),
     "tasks[1].name", 25),
    ("warmup longer than run", VALID.replace("duration_s: 10", "duration_s: 10\n  warmup_s: 20"), "scenario", 25),
    ("budget above soc memory", VALID.replace("memory_budget_mb: 512", "memory_budget_mb: 99999"),
     "scenario.memory_budget_mb", 28),
    ("tasks without scenario", VALID.split("scenario:")[0], "scenario", 1),
    ("transition to unknown task", VALID + "  transitions: {sequence: [classify, nobody]}\n",
     "scenario.transitions.sequence[1]", 29),
    ("transition row not summing to 1", VALID + "  transitions: {matrix: {classify: {classify: 0.5}}}\n",
     "scenario.transitions", 29),
    ("slo change without values", VALID.replace("arrival: {process: poisson, rate_hz: 30}",
                                                "arrival: {process: poisson, rate_hz: 30}\n    slo_changes: [{at_s: 3}]"),
     "tasks[0].slo_changes[0]", 25),
    ("duplicate key", VALID.replace("  name: s\n", "  name: s\n  name: t\n"), "scenario.name", 27),
    ("unknown policy", VALID.replace("memory_budget_mb: 512", "memory_budget_mb: 512\n  policies: [sparseloom, sv-ao-pn]"),
     "scenario.policies[1]", 29),
    ("not yaml", "soc: [unclosed\n", "(document)", 2),
    ("empty file", "", "(document)", 1),
    ("a list at top", "- 1\n- 2\n", "(document)", 1),
    ("wrong type for tasks", SOC + "tasks: 5\n", "tasks", 14),
    ("sparsity above 1", VALID.replace("memory_bandwidth_gbps: 20", "memory_bandwidth_gbps: 20\n      sparsity: {unstructured: 2}"),
     "soc.processors[0].sparsity.unstructured", 13),
    ("unknown sparsity pattern", VALID.replace("memory_bandwidth_gbps: 20",
                                               "memory_bandwidth_gbps: 20\n      sparsity: {2of4: 0.5}"),
     "soc.processors[0].sparsity.2of4", 13),
    ("unknown op", VALID.replace("memory_bandwidth_gbps: 20", "memory_bandwidth_gbps: 20\n      ops: [conv3d]"),
     "soc.processors[0].ops[0]", 13),
]

LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): (?P<path>(?:\[[^\]]*\]|[^\s\[])+): expected .+", re.DOTALL)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "w.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_the_importance_norm_reaches_the_pool_request(tmp_path: Path) -> None:
    from sparseloom.assemble import model_request

    text = VALID.replace("levels: [0.3, 0.5]}", "levels: [0.3, 0.5], importance: l2}")
    recipes = model_request(load_workload(_write(tmp_path, text)).models[0]).recipes
    assert [r.name for r in recipes] == ["structured-l2-0.3", "structured-l2-0.5"]


def test_base_file_is_valid(tmp_path: Path) -> None:
    assert main(["validate", str(_write(tmp_path, VALID))]) == 0


def test_table_has_enough_cases() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize(("text", "path", "line"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_file_is_located(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, path: str,
                             line: int | None) -> None:
    file = _write(tmp_path, text)
    assert main(["validate", str(file)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines, "no message"
    for msg in lines:
        assert LINE.match(msg), f"not a located line: {msg!r}"
    hits = [LINE.match(m) for m in lines]
    assert any(h and h["path"] == path for h in hits), f"{path!r} not named in {lines}"
    if line is not None:
        assert any(h and h["path"] == path and int(h["line"]) == line for h in hits), lines


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    file = _write(tmp_path, VALID.replace("latency_ms: 5", "latncy_ms: 5"))
    with pytest.raises(InputError) as info:
        load_workload(file)
    assert "did you mean 'latency_ms'" in str(info.value)


def test_discriminator_tag_is_not_shown_as_a_key(tmp_path: Path) -> None:
    file = _write(tmp_path, VALID.replace("rate_hz: 30", "rate_hz: -1"))
    with pytest.raises(InputError) as info:
        load_workload(file)
    (problem,) = info.value.complaints
    assert problem.path == "tasks[0].arrival.rate_hz"
    assert problem.found == "-1"


def test_include_is_resolved_and_errors_point_into_the_included_file(tmp_path: Path) -> None:
    (tmp_path / "soc.yaml").write_text(SOC.replace("memory_bandwidth_gbps: 20", "memory_bandwidth_gbps: -20"))
    (tmp_path / "w.yaml").write_text("include: soc.yaml\n" + BODY)
    with pytest.raises(InputError) as info:
        load_workload(tmp_path / "w.yaml")
    (problem,) = info.value.complaints
    assert problem.file.endswith("soc.yaml") and problem.line == 12


def test_include_merges(tmp_path: Path) -> None:
    (tmp_path / "soc.yaml").write_text(SOC)
    (tmp_path / "w.yaml").write_text("include: soc.yaml\n" + BODY)
    workload = load_workload(tmp_path / "w.yaml")
    assert workload.soc is not None and workload.soc.name == "board"
    assert workload.tasks[0].arrival.process == "poisson"


def test_include_loop_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.yaml").write_text("include: b.yaml\n" + SOC)
    (tmp_path / "b.yaml").write_text("include: a.yaml\n")
    assert main(["validate", str(tmp_path / "a.yaml")]) == 2
    err = capsys.readouterr().err
    assert "include loop" in err and "a.yaml" in err and "Traceback" not in err


def test_missing_include(tmp_path: Path) -> None:
    (tmp_path / "w.yaml").write_text("include: nowhere.yaml\n" + BODY)
    with pytest.raises(InputError) as info:
        load_workload(tmp_path / "w.yaml")
    assert info.value.complaints[0].path == "include[0]"


def test_several_problems_are_all_reported(tmp_path: Path) -> None:
    text = VALID.replace("rate_hz: 30", "rate_hz: -3").replace("memory_mb: 4096", "memory_mb: -1")
    with pytest.raises(InputError) as info:
        load_workload(_write(tmp_path, text))
    assert {p.path for p in info.value.complaints} == {"tasks[0].arrival.rate_hz", "soc.memory_mb"}


def test_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "/no/such/file.yaml"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    file = _write(tmp_path, VALID.replace("rate_hz: 30", "rate_hz: -3"))
    assert main(["validate", "--json", str(file)]) == 2
    data = json.loads(capsys.readouterr().out)
    assert data["valid"] == [] and data["problems"][0]["path"] == "tasks[0].arrival.rate_hz"


def test_workload_objects_are_frozen(tmp_path: Path) -> None:
    workload = load_workload(_write(tmp_path, VALID))
    with pytest.raises(ValidationError):
        workload.tasks[0].slo.latency_ms = 3  # type: ignore[misc]


def test_shipped_workloads_are_valid(repo_root: Path) -> None:
    files = sorted(str(p) for p in (repo_root / "workloads").rglob("*.yaml"))
    assert len(files) >= 7
    assert main(["validate", *files]) == 0


def test_cli_process_exit_codes(tmp_path: Path) -> None:
    bad = _write(tmp_path, VALID.replace("rate_hz: 30", "rate_hz: -3"))
    proc = subprocess.run([sys.executable, "-m", "sparseloom.cli", "validate", str(bad)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert "tasks[0].arrival.rate_hz" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "sparseloom.cli", "validate", "--bogus"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def _mutations() -> st.SearchStrategy[str]:
    """Random damage to the valid document: drop a key, or replace a value with junk."""
    junk = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True), st.text(max_size=5),
                     st.none(), st.booleans(), st.lists(st.integers(), max_size=2),
                     st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))

    def paths(node: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        out = [prefix] if prefix else []
        if isinstance(node, dict):
            for k, v in node.items():
                out += paths(v, prefix + (k,))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                out += paths(v, prefix + (i,))
        return out

    base = yaml.safe_load(VALID)
    all_paths = paths(base)

    @st.composite
    def mutate(draw: st.DrawFn) -> str:
        import copy

        doc = copy.deepcopy(base)
        for _ in range(draw(st.integers(1, 3))):
            path = draw(st.sampled_from(all_paths))
            parent = doc
            try:
                for key in path[:-1]:
                    parent = parent[key]  # type: ignore[index]
                if draw(st.booleans()) and isinstance(parent, dict):
                    parent.pop(path[-1], None)
                else:
                    parent[path[-1]] = draw(junk)  # type: ignore[index]
            except (KeyError, IndexError, TypeError):
                continue
        return yaml.safe_dump(doc)

    return mutate()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_mutations())
def test_random_damage_never_crashes(tmp_path: Path, text: str) -> None:
    file = tmp_path / "m.yaml"
    file.write_text(text)
    try:
        load_workload(file)
    except InputError as err:
        assert err.complaints
        for problem in err.complaints:
            assert LINE.match(str(problem)), str(problem)


def test_a_bad_reference_result_is_located(tmp_path: Path) -> None:
    """An SoC file's published results are input like any other: a latency no longer than the launch
    overhead, or an unknown dtype, is refused with the file, the line and the key."""
    root = Path(__file__).parents[2] / "workloads" / "socs" / "jetson_orin_agx.yaml"
    text = root.read_text()
    short = tmp_path / "short.yaml"
    short.write_text(text.replace("latency_ms: 0.636,", "latency_ms: 0.001,"))
    with pytest.raises(InputError) as err:
        load_workload(short)
    (p,) = err.value.complaints
    assert p.file == str(short) and p.line is not None and "launch_overhead_us" in p.expected
    odd = tmp_path / "odd.yaml"
    odd.write_text(text.replace("{model: resnet50-v1.5, dtype: int8,", "{model: resnet50-v1.5, dtype: int9,", 1))
    with pytest.raises(InputError) as err:
        load_workload(odd)
    assert any(q.path.endswith("reference[0].dtype") for q in err.value.complaints)


def _bomb(levels: int = 9) -> str:
    """A "billion laughs": each level a list of nine aliases of the one before (9^levels strings)."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for k in range(1, levels):
        lines.append(f"a{k}: &a{k} [" + ",".join([f"*a{k - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


_PEAK = """
import sys
from sparseloom.cli import main
code = main(sys.argv[1:])
# VmHWM is this process image's own peak: ru_maxrss would also count the forking parent's pages.
peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(int(peak.split()[1]) // 1024)
sys.exit(code)
"""


def test_an_alias_bomb_exits_2_naming_the_line_in_bounded_memory(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_bomb())
    assert bomb.stat().st_size < 1024
    proc = subprocess.run([sys.executable, "-c", _PEAK, "validate", str(bomb)], capture_output=True, text=True,
                          check=False, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert re.search(r"bomb\.yaml:\d+: .*aliases are expanded", proc.stderr) and "Traceback" not in proc.stderr
    peak_mb = int(proc.stdout.strip().splitlines()[-1])
    assert peak_mb < 500, f"peak RSS {peak_mb} MB"


def test_nesting_and_size_have_bounds(tmp_path: Path) -> None:
    from sparseloom import yamlsource

    deep = tmp_path / "deep.yaml"
    deep.write_text("a:\n  b: " + "[" * (yamlsource.MAX_DEPTH + 1) + "]" * (yamlsource.MAX_DEPTH + 1) + "\n")
    with pytest.raises(InputError, match=r"deep\.yaml:2: .*nesting deeper than 64"):
        load_workload(deep)
    ok = tmp_path / "ok.yaml"
    ok.write_text("a: " + "[" * 40 + "]" * 40 + "\n")
    node, depth = yamlsource.load(ok).data["a"], 1
    while node:
        node, depth = node[0], depth + 1
    assert depth == 40  # below the bound it parses whole
    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * (yamlsource.MAX_BYTES // 10 + 1))
    with pytest.raises(InputError, match=r"big\.yaml: .*at most 4 MiB"):
        load_workload(big)
    # A bomb just under the node bound still loads: the bound counts expansions, it does not ban aliases.
    small = tmp_path / "small.yaml"
    small.write_text(_bomb(levels=4))
    assert len(yamlsource.load(small).data["a3"]) == 9
