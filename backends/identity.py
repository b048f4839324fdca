"""What makes compiled code what it is, read without importing TVM: the pipeline's source and
TVM's version, and the tuning records a compile would apply. Compile-cache and profile keys
both use it, so a changed rule or database rebuilds artifacts and re-measures profiles."""

from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path

# The modules whose text decides the generated code (legalisation, packing, schedule rules).
PIPELINE_SOURCES = ("compile.py", "cpu_schedule.py", "weight_layout.py")
TUNING_FILES = ("database_tuning_record.json", "schedule_choices.json")
# A cache's tuning database, beside its compiled artifacts (``<cache>/compiled``).
TUNING_DIR = "tuning"


def pipeline_version() -> str:
    """A hash of TVM's version and of the pipeline modules' source."""
    digest = hashlib.sha256(metadata.version("apache-tvm").encode())
    here = Path(__file__).parent
    for name in PIPELINE_SOURCES:
        digest.update((here / name).read_bytes())
    return "sparseloom-cpu-rules-" + digest.hexdigest()[:16]


def has_records(tuning_db: Path) -> bool:
    records = tuning_db / TUNING_FILES[0]
    return records.exists() and records.stat().st_size > 0


def tuning_state(tuning_db: Path | None) -> str:
    """``untuned`` when there is no database or it holds no records, else a hash of the records
    and choices the compile would apply."""
    if tuning_db is None or not has_records(tuning_db):
        return "untuned"
    digest = hashlib.sha256()
    for name in TUNING_FILES:
        path = tuning_db / name
        digest.update(path.read_bytes() if path.exists() else b"")
    return "tuned:" + digest.hexdigest()[:16]
