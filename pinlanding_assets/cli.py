"""The ``pinlanding`` command.

    pinlanding make-drops   split the shared Fashion catalog into demo drops, the demo search log into weeks
    pinlanding run          the main job: every ready drop through the whole asset graph
    pinlanding release      cut a model release by hand (build it, re-score every drop, publish it)
    pinlanding evaluate     the dual encoder against the ground truth of a catalog directory (--json)
    pinlanding serve        serve the landing-page site on localhost
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import dagster as dg

from pinlanding_assets.refresh import keys
from pinlanding_assets.refresh.stages import STAGE_NAMES, stage, stage_of
from pinlanding_assets.settings import get_paths, load_settings


def _demo_inputs(drops: int, source: Path | None = None, landing: Path | None = None) -> None:
    """Demo catalog drops and the demo search log's week files, unless they are already there.
    Runs before the code location is imported: the search weeks are read from the log folder."""
    from pinlanding_assets.catalog.drops import ready_drops, split_fashion_catalog
    from pinlanding_assets.demand.intents import split_search_log

    paths = get_paths()
    landing = landing or paths.landing_dir
    if source is not None or not ready_drops(landing):
        for drop in split_fashion_catalog(source or paths.fashion_catalog_dir, landing, n_drops=drops):
            state = "created" if drop.created else "already ready"
            print(f"{drop.name}: {drop.products} products ({state}) at {drop.path}")
    if not any(paths.search_log_dir.glob("*-W*.*")) and paths.shared_search_log.is_file():
        weeks = split_search_log(paths.shared_search_log, paths.search_log_dir)
        print(f"search log: {len(weeks)} week files in {paths.search_log_dir}")


def _make_drops(args: argparse.Namespace) -> int:
    _demo_inputs(args.drops, Path(args.source) if args.source else None, Path(args.landing) if args.landing else None)
    return 0


class Runner:
    """Materializes stages in-process on the project's instance, through the same jobs, assets and
    partitions the daemon uses; prints one line per run."""

    def __init__(self) -> None:
        from pinlanding_assets.definitions import defs, settings, weeks

        self.defs, self.settings, self.weeks = defs, settings, weeks
        self.instance = dg.DagsterInstance.get()

    def run(self, stage_name: str, partition_key: str) -> bool:
        return self.run_selection(list(stage(stage_name).assets), partition_key)

    def score(self, drops: list[str]) -> list[str]:
        """Score ``drops`` in one run (one process, one Ray) when they are a run of consecutive registered
        drops; if that run fails, or they are not, one run per drop, so a broken drop holds back only
        itself. Returns the drops that failed."""
        from pinlanding_assets.partitions import landed_drops

        order = landed_drops(self.instance)
        first = order.index(drops[0]) if drops and drops[0] in order else -1
        if len(drops) > 1 and order[first:first + len(drops)] == drops:
            if self.run_selection(list(stage("scoring").assets), drops[0], last=drops[-1]):
                return []
            print("the scoring run failed: scoring each drop on its own", file=sys.stderr)
        return [drop for drop in drops if not self.run("scoring", drop)]

    def demand(self) -> bool:
        """Report changed week files (as the search-log sensor would), refresh those weeks, then the
        latest demand window."""
        from pinlanding_assets.refresh.sensors import changed_weeks

        events, outside = changed_weeks(self.settings.paths.search_log_dir, self.weeks, self.instance)
        if outside:
            print(f"week files past the known weeks, ignored: {', '.join(outside)}", file=sys.stderr)
        done = self.instance.get_materialized_partitions(keys.QUERY_INTENTS)
        weeks = sorted({e.partition for e in events} | (set(self.weeks.get_partition_keys()) - done))
        for event in events:
            self.instance.report_runless_asset_event(event)
        ok = all([self.run_selection([keys.QUERY_INTENTS, keys.SEARCH_LOG_QUARANTINE], week) for week in weeks])
        latest = self.weeks.get_last_partition_key()
        return ok and latest is not None and self.run_selection([keys.DEMAND_WINDOW], latest)

    def run_selection(self, assets: list[dg.AssetKey], partition_key: str, last: str | None = None) -> bool:
        """One run of ``assets`` for ``partition_key``, or for the partitions from it to ``last``."""
        job = self.defs.resolve_job_def(stage_of(assets[0]).job_name)
        started = time.perf_counter()
        span = {"partition_key": partition_key} if last is None else {"tags": {
            "dagster/asset_partition_range_start": partition_key, "dagster/asset_partition_range_end": last}}
        result = job.execute_in_process(instance=self.instance, raise_on_error=False,
                                        asset_selection=assets, **span)
        cause = "" if result.success else f" ({failure_cause(result)}; run {result.run_id})"
        partition_key = partition_key if last is None else f"{partition_key}...{last}"
        print(f"{', '.join(a.to_user_string() for a in assets)} {partition_key}: {'ok' if result.success else 'FAILED'} in "
              f"{time.perf_counter() - started:.1f}s{cause}", flush=True)
        return result.success


def failure_cause(result) -> str:
    """The first failed step's error as one line: what a user needs, without the stack."""
    failures = result.get_step_failure_events()
    if not failures:
        return "the run failed before any step"
    error = failures[0].step_failure_data.error
    while error.cause is not None and error.cls_name in {"DagsterExecutionStepExecutionError", "DagsterUserCodeExecutionError"}:
        error = error.cause
    message = error.message.strip().splitlines()[0] if error.message.strip() else error.cls_name
    return f"{failures[0].step_key}: {message}"


def _run(args: argparse.Namespace) -> int:
    """Intake every ready drop, cut a release when one is due, score, refresh demand, publish."""
    from pinlanding_assets.catalog.drops import ready_drops

    _demo_inputs(args.drops)
    from pinlanding_assets.instance import ensure_dagster_home, register_drops

    home = ensure_dagster_home()
    paths = get_paths()
    drops = ready_drops(paths.landing_dir)
    if args.only:
        unknown = sorted(set(args.only) - set(drops))
        if unknown:
            print(f"not ready in {paths.landing_dir}: {', '.join(unknown)}", file=sys.stderr)
            return 2
        drops = [drop for drop in drops if drop in args.only]
    runner = Runner()
    register_drops(runner.instance, drops)
    print(f"DAGSTER_HOME={home}; landing={paths.landing_dir}; warehouse={paths.warehouse_dir}")
    stages = STAGE_NAMES[STAGE_NAMES.index(args.from_stage):]
    failed = []
    if "intake" in stages:
        failed = [drop for drop in drops if not runner.run("intake", drop)]
    if "release" in stages:
        _release_if_due(runner, bool(args.only))
    if "scoring" in stages:
        failed += runner.score(drops)
    if "demand" in stages and not runner.demand():
        return 1
    published = _publish(runner)
    if failed:
        print(f"failed drops (left out of the pages): {', '.join(sorted(set(failed)))}", file=sys.stderr)
    return 0 if published and not failed else 1


def _release_if_due(runner: Runner, only_some_drops: bool) -> None:
    from pinlanding_assets.refresh.releases import current_release, cut_release, release_due

    if only_some_drops and current_release(runner.instance) is not None:
        print("release: not considered with --only (a release re-scores every drop: `pinlanding release`)")
        return
    refresh = runner.settings.refresh
    decision = release_due(runner.instance, refresh.release_new_label_share, refresh.release_max_age_days)
    print(f"release: {'cut' if decision.due else 'kept'} ({decision.reason})")
    if decision.due and not runner.run("release", cut_release(runner.instance)):
        print("the release failed to build: the release in service stays", file=sys.stderr)


def _publish(runner: Runner) -> bool:
    """Publish the release every drop is settled for; say what waits when there is none."""
    from pinlanding_assets.refresh.releases import current_release, drop_states, publishable_release

    release = publishable_release(runner.instance)
    if release is None:
        current = current_release(runner.instance)
        waiting = [s for s in drop_states(runner.instance, current) if not s.settled] if current else []
        print(f"nothing published: {'no release in service' if current is None else f'release {current} waits for'} "
              + ", ".join(f"{s.drop} ({f'scored with {s.release}' if s.release else 'not scored'})" for s in waiting)
              + "; the published site stays as it is", file=sys.stderr)
        return False
    return runner.run("publish", release)


def _release(args: argparse.Namespace) -> int:
    """Cut a release by hand; unless --cut-only, build it, re-score every drop and publish it."""
    from pinlanding_assets.instance import ensure_dagster_home

    ensure_dagster_home()
    from pinlanding_assets.partitions import landed_drops
    from pinlanding_assets.refresh.releases import (
        ReleaseError,
        cut_release,
        publishable_release,
        require_vlm_attributes,
        withdraw_release,
    )

    try:
        require_vlm_attributes(dg.DagsterInstance.get())
    except ReleaseError as exc:
        print(f"pinlanding release: {exc}", file=sys.stderr)
        return 2
    runner = Runner()
    key = cut_release(runner.instance)
    print(f"release {key} cut")
    if args.cut_only:
        return 0
    started = time.perf_counter()
    if not runner.run("release", key):
        withdraw_release(runner.instance, key)
        print(f"release {key} failed to build and was withdrawn: the release in service stays", file=sys.stderr)
        return 1
    runner.score(landed_drops(runner.instance))
    release = publishable_release(runner.instance)
    ok = release == key and runner.run("publish", key)
    print(f"release {key}: {'published' if ok else 'NOT published'} after {time.perf_counter() - started:.1f}s")
    return 0 if ok else 1


def _evaluate(args: argparse.Namespace) -> int:
    """The dual encoder on a labelled catalog directory; one JSON object on the last line."""
    import json

    import polars as pl

    from pinlanding_assets.catalog.products import find_product_table, validate_catalog

    if not Path(args.catalog).is_dir():
        print(f"{args.catalog} is not a directory: pass a catalog drop directory to --catalog", file=sys.stderr)
        return 2
    find_product_table(Path(args.catalog))  # no product table: a one-line error before any model loads
    paths = get_paths()
    release = args.release or _latest_release_file(paths.asset_dir("model_release"))
    if release is None:
        print("no model release found: run `pinlanding run` first", file=sys.stderr)
        return 2
    encoder_table = paths.partition_path("dual_encoder", release)
    vocabulary_table = paths.partition_path("curated_vocabulary", release)
    for path in (encoder_table, vocabulary_table):
        if not path.is_file():
            print(f"{path} not found: run `pinlanding run` (or materialize dual_encoder) first", file=sys.stderr)
            return 2
    from pinlanding_assets.encoder.evaluation import evaluate_encoders
    from pinlanding_assets.encoder.model import DualEncoder
    from pinlanding_assets.encoder.records import EncoderRecord

    record = EncoderRecord.from_table(pl.read_parquet(encoder_table))
    catalog = validate_catalog("evaluate", Path(args.catalog))
    if catalog.ground_truth.width <= 1:
        print(f"{args.catalog} has no label columns to evaluate against", file=sys.stderr)
        return 2
    products = catalog.products.sort("product_id")
    if args.limit:
        products = products.head(args.limit)
    encoder = DualEncoder(record.spec, paths.open_clip_cache)
    metrics = evaluate_encoders(encoder, products, catalog.ground_truth, pl.read_parquet(vocabulary_table),
                                record.thresholds)
    metrics["model_version"] = record.version
    metrics["release"] = release
    metrics["quarantined"] = catalog.quarantine.height
    if not args.json:
        for name in ("fused", "image_only", "text_only"):
            print(f"{name:>10}: Recall@10 {metrics[name]['recall_at_10']:.4f} on {metrics[name]['products']} products")
    print(json.dumps(metrics, sort_keys=True))
    return 0


def _latest_release_file(folder: Path) -> str | None:
    from pinlanding_assets.partitions import release_order

    keys = [p.stem for p in folder.glob("r*.parquet")] if folder.is_dir() else []
    return max(keys, key=release_order) if keys else None


def make_server(directory: Path, host: str, port: int):
    """A threaded static file server rooted at ``directory`` (the handler refuses paths outside it). It
    answers the site's redirect map for real: 301 with a Location, or 410, for pages a release removed;
    the site's own records (``_pinlanding/``) are not served."""
    import json
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import unquote, urlsplit

    from pinlanding_assets.site.lifecycle import GONE_PAGE, REDIRECTS_JSON, redirect_answer

    cache: dict[str, tuple[float, dict]] = {}

    def answers() -> dict:
        """The map of the site in service, read again when a publish swaps the site."""
        path = directory / REDIRECTS_JSON
        stamp = path.stat().st_mtime if path.is_file() else 0.0
        if cache.get("map", (None,))[0] != stamp:
            cache["map"] = (stamp, json.loads(path.read_text()) if stamp else {})
        return cache["map"][1]

    class Site(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
            pass

        def send_head(self):
            path = unquote(urlsplit(self.path).path)
            if path.startswith("/_pinlanding/"):
                self.send_error(404)
                return None
            found = redirect_answer(answers(), path)
            if found is None:
                return super().send_head()
            status, location = found
            if status == 301:
                self.send_response(301)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            body = (directory / GONE_PAGE).read_bytes()
            self.send_response(410)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            return None

    return ThreadingHTTPServer((host, port), partial(Site, directory=str(directory)))


def _serve(args: argparse.Namespace) -> int:
    directory = Path(args.dir) if args.dir else get_paths().site_dir
    if not (directory / "index.html").is_file():
        print(f"no site at {directory}: run `pinlanding run` (or materialize landing_pages) first", file=sys.stderr)
        return 2
    try:
        server = make_server(directory, args.host, args.port)
    except OSError as exc:
        print(f"pinlanding serve: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
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
    make.add_argument("--drops", type=positive_int, default=4, help="number of drops (default 4)")
    make.set_defaults(handler=_make_drops)

    run = commands.add_parser("run", help="materialize the whole graph for every ready drop")
    run.add_argument("--drops", type=positive_int, default=4, help="demo drops to create when the landing area is empty")
    run.add_argument("--only", nargs="+", help="run the per-drop stages for these drops only (with the release in "
                                               "service; drops not scored with it stay off the pages)")
    run.add_argument("--from-stage", choices=STAGE_NAMES, default="intake",
                     help="start at this stage, reusing what earlier stages materialized (default: intake); the "
                          "release stage cuts a release only when one is due")
    run.set_defaults(handler=_run)

    release = commands.add_parser("release", help="cut a model release by hand")
    release.add_argument("--cut-only", action="store_true",
                         help="only register it (under `make dev`, automation builds, re-scores and publishes it)")
    release.set_defaults(handler=_release)

    evaluate = commands.add_parser("evaluate", help="evaluate the trained dual encoder on a labelled catalog directory")
    evaluate.add_argument("--catalog", required=True, help="a catalog drop directory (Fashion or generic layout)")
    evaluate.add_argument("--json", action="store_true", help="print only the JSON object")
    evaluate.add_argument("--limit", type=positive_int, help="evaluate on the first N products (by id)")
    evaluate.add_argument("--release", help="the release to evaluate (default: the newest built)")
    evaluate.set_defaults(handler=_evaluate)

    serve = commands.add_parser("serve", help="serve the landing-page site on localhost")
    serve.add_argument("--dir", help="site directory (default: data/site)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=port_number, default=8000, help="0-65535; 0 picks a free port")
    serve.set_defaults(handler=_serve)
    return parser


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    """Run a command; the project's own errors about its inputs end as one line on stderr, exit 2."""
    from pinlanding_assets.catalog.drops import DropError
    from pinlanding_assets.catalog.products import CatalogTableError
    from pinlanding_assets.demand.intents import SearchLogError
    from pinlanding_assets.settings import SettingError, export_library_environment
    from resources.models import ModelFileError

    args = build_parser().parse_args(argv)
    try:
        export_library_environment(load_settings().dagster_home)
        return args.handler(args)
    except (CatalogTableError, SearchLogError, ModelFileError, SettingError, DropError) as exc:
        print(f"pinlanding {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
