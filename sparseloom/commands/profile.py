"""``sparseloom profile WORKLOAD`` and ``sparseloom profile show FILE``: measure or model block latencies."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from sparseloom.commands import common
from sparseloom.errors import InputError, Complaint


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "profile", help="profile a workload's blocks on its SoC, or show a profile file",
        usage="sparseloom profile WORKLOAD [--soc FILE] [--out FILE] [--repeats N] [--tune-budget N]\n"
              "       sparseloom profile show FILE [--json]",
        description="Compile each block through TVM for each processor; measure where the processor is "
                    "present, model it where not (roofline with each processor's efficiency fitted to the "
                    "published results in the SoC file, the same on every machine). Cached.")
    p.add_argument("target", nargs="+", metavar="WORKLOAD | show FILE")
    p.add_argument("--soc", type=Path, metavar="FILE", help="profile on this SoC file instead of the workload's")
    p.add_argument("--cache", type=Path, metavar="DIR", help="pools, profiles, compiled blocks")
    p.add_argument("--out", type=Path, metavar="FILE", help="also write the profile JSON here")
    p.add_argument("--repeats", type=int, default=20, metavar="N", help="timed runs per block (after warm-up)")
    p.add_argument("--tune-budget", type=int, default=0, metavar="TRIALS",
                   help="MetaSchedule trials per block for present CPUs (0: rule schedules only)")
    p.add_argument("--calibrate-on-host", action="store_true",
                   help="fit absent processors' efficiency to 8 blocks measured on this host instead of the "
                        "SoC file's published results (the profile then depends on this machine's load)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="show: print the profile as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.target[0] == "show":
        if len(args.target) != 2:
            raise InputError([Complaint("FILE", "exactly one profile file after 'show'", " ".join(args.target[1:]))])
        return show(Path(args.target[1]), args.json)
    if len(args.target) != 1:
        raise InputError([Complaint("WORKLOAD", "one workload file", " ".join(args.target))])
    if args.repeats < 1 or args.tune_budget < 0:
        raise InputError([Complaint("--repeats/--tune-budget", "repeats >= 1 and a budget >= 0",
                                  f"{args.repeats}/{args.tune_budget}")])
    from sparseloom.assemble import idle_gap_ms, profile_pool, workload_pool

    args.workload = args.target[0]
    workload, soc = common.load(args)
    cache = common.cache_dir(args)
    pool = workload_pool(workload, cache, not args.no_progress, args.workload)
    profile = profile_pool(soc, pool, cache, progress=not args.no_progress, repeats=args.repeats,
                           tune_trials=args.tune_budget, idle_ms=idle_gap_ms(workload, Path(args.workload).parent),
                           calibrate_on_host=args.calibrate_on_host)
    if args.out:
        tmp = Path(str(args.out) + ".tmp")
        profile.save(tmp)
        shutil.move(tmp, args.out)
        print(f"wrote {args.out}", file=sys.stderr)
    _table(profile)
    return 0


def show(path: Path, as_json: bool) -> int:
    from backends.profile import Profile

    if not path.is_file():
        raise InputError([Complaint("FILE", "an existing profile JSON file", "no such file", str(path))])
    try:
        profile = Profile.load(path)
    except (ValueError, KeyError, TypeError) as err:
        raise InputError([Complaint("", "a profile written by 'sparseloom profile'", str(err), str(path))]) from None
    if as_json:
        print(json.dumps(profile.to_json(), indent=1))
    else:
        _table(profile)
    return 0


def _table(profile: object) -> None:
    from backends.profile import Profile

    assert isinstance(profile, Profile)
    print(f"profile for {profile.soc}: {len(profile.entries)} (block, processor) entries")
    print(f"{'block':<34} {'processor':<10} {'latency ms':>10} {'iqr ms':>8} {'weights KB':>10}  source")
    for e in sorted(profile.entries, key=lambda e: (e.block, e.processor)):
        print(f"{e.block[:34]:<34} {e.processor:<10} {e.latency_ms:>10.4f} {e.latency_iqr_ms:>8.4f} "
              f"{e.weight_bytes / 1e3:>10.1f}  {e.source} ({e.device})")
    measured = sum(e.source == "measured" for e in profile.entries)
    print(f"{measured} measured, {len(profile.entries) - measured} modelled; "
          f"{len(profile.loads)} load costs, {len(profile.transfers)} transfer costs")
