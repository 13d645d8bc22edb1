"""The ``pinlanding`` command.

    pinlanding make-drops   split the shared Fashion catalog into demo drops in the landing directory
    pinlanding run          the main job: every ready drop through the whole asset graph
    pinlanding evaluate     the dual encoder against the labels of a catalog directory (--json)
    pinlanding serve        serve the landing-page site on localhost
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pinlanding_assets.settings import get_paths


def _make_drops(args: argparse.Namespace) -> int:
    from pinlanding_assets.catalog.drops import split_fashion_catalog

    paths = get_paths()
    source = Path(args.source) if args.source else paths.fashion_catalog_dir
    landing = Path(args.landing) if args.landing else paths.landing_dir
    for drop in split_fashion_catalog(source, landing, n_drops=args.drops):
        state = "created" if drop.created else "already ready"
        print(f"{drop.name}: {drop.products} products ({state}) at {drop.path}")
    return 0


STAGES = ("intake", "cross", "scoring", "publish")


def _run(args: argparse.Namespace) -> int:
    from pinlanding_assets.catalog.drops import ready_drops, split_fashion_catalog
    from pinlanding_assets.instance import ensure_dagster_home, register_drops

    home = ensure_dagster_home()
    import dagster as dg

    from pinlanding_assets.definitions import defs
    from pinlanding_assets.jobs import CATALOG_DROP_JOB, CROSS_DROP_JOB, DROP_SCORING_JOB, PUBLISH_JOB

    paths = get_paths()
    if not ready_drops(paths.landing_dir):
        split_fashion_catalog(paths.fashion_catalog_dir, paths.landing_dir, n_drops=args.drops)
    drops = ready_drops(paths.landing_dir)
    if args.only:
        unknown = sorted(set(args.only) - set(drops))
        if unknown:
            print(f"not ready in {paths.landing_dir}: {', '.join(unknown)}", file=sys.stderr)
            return 2
        drops = [drop for drop in drops if drop in args.only]
    instance = dg.DagsterInstance.get()
    register_drops(instance, drops)
    print(f"DAGSTER_HOME={home}; landing={paths.landing_dir}; warehouse={paths.warehouse_dir}")

    def per_drop(job_name: str) -> list[str]:
        job, failed = defs.resolve_job_def(job_name), []
        for drop in drops:
            started = time.perf_counter()
            result = job.execute_in_process(partition_key=drop, instance=instance, raise_on_error=False)
            print(f"{job_name} {drop}: {'ok' if result.success else 'FAILED'} in {time.perf_counter() - started:.1f}s")
            if not result.success:
                failed.append(drop)
        return failed

    stages = STAGES[STAGES.index(args.from_stage):]
    if "intake" in stages:
        failed = per_drop(CATALOG_DROP_JOB)
        if failed:
            print(f"failed drops: {', '.join(failed)}; the cross-drop assets were not built", file=sys.stderr)
            return 1
    def once(job_name: str) -> bool:
        started = time.perf_counter()
        result = defs.resolve_job_def(job_name).execute_in_process(instance=instance, raise_on_error=False)
        print(f"{job_name}: {'ok' if result.success else 'FAILED'} in {time.perf_counter() - started:.1f}s")
        return result.success

    if "cross" in stages and not once(CROSS_DROP_JOB):
        return 1
    if "scoring" in stages and per_drop(DROP_SCORING_JOB):
        return 1
    return 0 if once(PUBLISH_JOB) else 1


def _evaluate(args: argparse.Namespace) -> int:
    """The dual encoder on a labelled catalog directory; one JSON object on the last line."""
    import json

    import polars as pl

    from pinlanding_assets.catalog.products import validate_catalog
    from pinlanding_assets.encoder.evaluation import evaluate_encoders
    from pinlanding_assets.encoder.model import DualEncoder, spec_from_record
    from resources.models import open_clip_cache

    warehouse = get_paths().warehouse_dir
    encoder_table, vocabulary_table = warehouse / "dual_encoder.parquet", warehouse / "curated_vocabulary.parquet"
    for path in (encoder_table, vocabulary_table):
        if not path.is_file():
            print(f"{path} not found: run `pinlanding run` (or materialize dual_encoder) first", file=sys.stderr)
            return 2
    row = pl.read_parquet(encoder_table).row(0, named=True)
    spec = spec_from_record(row)
    catalog = validate_catalog("evaluate", Path(args.catalog))
    if catalog.labels.width <= 1:
        print(f"{args.catalog} has no label columns to evaluate against", file=sys.stderr)
        return 2
    products = catalog.products.sort("product_id")
    if args.limit:
        products = products.head(args.limit)
    encoder = DualEncoder(spec, open_clip_cache())
    metrics = evaluate_encoders(encoder, products, catalog.labels, pl.read_parquet(vocabulary_table),
                                json.loads(row["thresholds"]))
    metrics["model_version"] = row["version"]
    metrics["quarantined"] = catalog.quarantine.height
    if not args.json:
        for name in ("fused", "image_only", "text_only"):
            print(f"{name:>10}: Recall@10 {metrics[name]['recall_at_10']:.4f} on {metrics[name]['products']} products")
    print(json.dumps(metrics, sort_keys=True))
    return 0


def make_server(directory: Path, host: str, port: int):
    """A threaded static file server rooted at ``directory`` (the handler refuses paths outside it)."""
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
            pass

    return ThreadingHTTPServer((host, port), partial(Quiet, directory=str(directory)))


def _serve(args: argparse.Namespace) -> int:
    from pinlanding_assets.site.assets import site_dir

    directory = Path(args.dir) if args.dir else site_dir()
    if not (directory / "index.html").is_file():
        print(f"no site at {directory}: run `pinlanding run` (or materialize landing_pages) first", file=sys.stderr)
        return 2
    server = make_server(directory, args.host, args.port)
    print(f"serving {directory} at http://{args.host}:{server.server_address[1]}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pinlanding", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    make = commands.add_parser("make-drops", help="split the Fashion catalog into demo drops (images linked)")
    make.add_argument("--source", help="Fashion Product Images folder (default: shared data)")
    make.add_argument("--landing", help="landing directory (default: PINLANDING_LANDING_DIR or data/landing)")
    make.add_argument("--drops", type=int, default=4, help="number of drops (default 4)")
    make.set_defaults(handler=_make_drops)

    run = commands.add_parser("run", help="materialize the whole graph for every ready drop")
    run.add_argument("--drops", type=int, default=4, help="demo drops to create when the landing area is empty")
    run.add_argument("--only", nargs="+", help="run the per-drop stages for these drops only")
    run.add_argument("--from-stage", choices=STAGES, default="intake",
                     help="start at this stage, reusing what earlier stages materialized (default: intake)")
    run.set_defaults(handler=_run)

    evaluate = commands.add_parser("evaluate", help="evaluate the trained dual encoder on a labelled catalog directory")
    evaluate.add_argument("--catalog", required=True, help="a catalog drop directory (Fashion or generic layout)")
    evaluate.add_argument("--json", action="store_true", help="print only the JSON object")
    evaluate.add_argument("--limit", type=int, help="evaluate on the first N products (by id)")
    evaluate.set_defaults(handler=_evaluate)

    serve = commands.add_parser("serve", help="serve the landing-page site on localhost")
    serve.add_argument("--dir", help="site directory (default: data/site)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(handler=_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
