"""Incremental refresh under the Dagster daemon (what `make dev` runs), on a project built by the main
command: seconds from a new drop's _READY to the landing pages updated, the asset partitions
materialized meanwhile, the LLM title calls; and, with --release, a release cut by hand until every
drop is re-scored and published.

    .venv/bin/python benchmarks/incremental_refresh.py --prepare --hold-out 1043   # the baseline, once
    .venv/bin/python benchmarks/incremental_refresh.py --new-products 100 --offset 0 [--json]
    .venv/bin/python benchmarks/incremental_refresh.py --new-products 943 --offset 100 --release [--json]

The project (PINLANDING_DATA_DIR, DAGSTER_HOME) must hold a published release whose drops leave the
last --hold-out lines of the shared catalog out: --prepare splits the rest of the catalog into 4 drops
and runs `pinlanding run` (the README main command on that catalog). Each new drop takes the next
--new-products held-out lines from --offset, so no product is in two drops.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def catalog_lines(folder: Path) -> int:
    return sum(1 for line in (folder / "catalog.csv").read_bytes().splitlines()[1:] if line.strip())


def prepare(hold_out: int) -> None:
    from pinlanding_assets.catalog.drops import write_fashion_drop
    from pinlanding_assets.instance import ensure_dagster_home
    from pinlanding_assets.settings import get_paths

    ensure_dagster_home()
    paths = get_paths()
    kept = catalog_lines(paths.fashion_catalog_dir) - hold_out
    size = -(-kept // 4)
    for index in range(4):
        name = f"drop-{index + 1:03d}"
        if not (paths.landing_dir / name).exists():
            write_fashion_drop(paths.fashion_catalog_dir, paths.landing_dir, name, index * size,
                               min(size, kept - index * size))
    subprocess.run([Path(sys.executable).parent / "pinlanding", "run"], cwd=ROOT, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new-products", type=int, default=100)
    parser.add_argument("--hold-out", type=int, default=1043, help="catalog lines the baseline leaves out")
    parser.add_argument("--offset", type=int, default=0, help="first held-out line of the new drop")
    parser.add_argument("--prepare", action="store_true", help="build the baseline project and stop")
    parser.add_argument("--release", action="store_true", help="then cut a release by hand and time its publish")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.prepare:
        prepare(args.hold_out)
        return 0
    if args.offset + args.new_products > args.hold_out:
        parser.error("the new drop must come from the held-out lines")

    import dagster as dg

    from pinlanding_assets.catalog.drops import ready_drops, write_fashion_drop
    from pinlanding_assets.instance import ensure_dagster_home
    from pinlanding_assets.refresh.releases import current_release, latest_record
    from pinlanding_assets.settings import get_paths
    from pinlanding_assets_tests.daemon import DaemonProcess, materialized_since

    ensure_dagster_home()
    paths = get_paths()
    first = catalog_lines(paths.fashion_catalog_dir) - args.hold_out + args.offset
    drop = f"drop-{len(ready_drops(paths.landing_dir)) + 1:03d}"
    figures: dict = {"new_products": args.new_products, "drop": drop}
    daemon = DaemonProcess(ROOT, dict(os.environ), Path(tempfile.mkdtemp()) / "daemon.log")
    with dg.DagsterInstance.get() as instance:
        release = current_release(instance)
        if release is None or latest_record(instance, "landing_pages", release) is None:
            print("no published release: run with --prepare (or `pinlanding run`) first", file=sys.stderr)
            return 2
        daemon.start()
        try:
            time.sleep(20)  # the daemon and its code server start before the drop lands
            ready_at = time.time()
            write_fashion_drop(paths.fashion_catalog_dir, paths.landing_dir, drop, first, args.new_products)
            seconds = daemon.wait_for(instance, f"{drop} published", lambda: (
                latest_record(instance, "landing_pages", release).timestamp > ready_at
                and latest_record(instance, "attribute_assignments", drop) is not None), args.timeout)
            published = latest_record(instance, "landing_pages", release).timestamp
            touched = sorted(materialized_since(instance, ready_at, published + 0.001))
            collections = latest_record(instance, "collections", release).asset_materialization.metadata
            figures.update({
                "ready_to_pages_seconds": round(seconds, 1),
                "materialized": [f"{asset}[{partition}]" for asset, partition in touched],
                "title_llm_calls": collections["title_llm_calls"].value,
                "title_cache_hits": collections["title_cache_hits"].value,
            })
            print(f"(a/b) {args.new_products} products: {seconds:.0f} s from _READY to pages; "
                  f"{collections['title_llm_calls'].value} LLM title calls, "
                  f"{collections['title_cache_hits'].value} titles from the cache", flush=True)
            print("      materialized: " + ", ".join(figures["materialized"]), flush=True)
            if args.release:
                drained = daemon.drain(instance, args.timeout)  # the new drop's VLM labelling, then nothing
                print(f"      then {drained:.0f} s until the runs in flight (the drop's VLM labelling) finished",
                      flush=True)
                cut_at = time.time()
                subprocess.run([Path(sys.executable).parent / "pinlanding", "release", "--cut-only"], cwd=ROOT,
                               check=True)
                with dg.DagsterInstance.get() as fresh:
                    new = max(fresh.get_dynamic_partitions("model_releases"))
                seconds = daemon.wait_for(instance, f"release {new} published",
                                          lambda: latest_record(instance, "landing_pages", new) is not None, args.timeout)
                figures["release"] = {"release": new, "cut_to_pages_seconds": round(seconds, 1),
                                      "materialized": len(materialized_since(instance, cut_at))}
                print(f"(c) release {new} cut by hand: {seconds:.0f} s until every drop is re-scored and published",
                      flush=True)
            daemon.drain(instance)
        finally:
            daemon.stop()
    if args.json:
        print(json.dumps(figures, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
