"""Does a change leave what the graph makes unchanged? The whole graph (`pinlanding run`) on the same
small real inputs (2 drops of 40 Fashion products, 3 search weeks, the 0.5B LLM) at two commits, in
fresh data directories; then every warehouse table (rows sorted, every column), every site file, the
set of thumbnails and the encoder checkpoint's weights compared. Prints the figures; exits 1 when
something differs.

    .venv/bin/python benchmarks/same_outputs.py --before 1c64a33 --after HEAD \\
        [--rename catalog_labels=catalog_ground_truth] [--work /tmp/same-outputs]

Each run's own directory is written as <root> before hashing (image and checkpoint paths hold it, and
thumbnail names hash the image path), so only what the code makes is compared. Training is seeded and
two runs of one commit usually give identical digests, but the LLM on CPU is not always
bit-reproducible: one run in five here answered one product differently, and everything downstream of
the VLM stage followed. A difference that starts in `raw_vlm_attributes` wants a second run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SMALL = {"PINLANDING_LLM": "qwen2.5-coder-0.5b-instruct-q4", "PINLANDING_ATTRIBUTE_SAMPLE": "8",
         "PINLANDING_MIN_SUPPORT": "1", "PINLANDING_ENCODER_PRODUCTS": "300", "PINLANDING_MAX_COLLECTIONS": "12",
         "PINLANDING_MIN_FEED_SIZE": "3", "PINLANDING_DEMAND_WEEKS": "2", "PINLANDING_TARGET_PRECISION": "0.5",
         "PINLANDING_MIN_JOINT_CONFIDENCE": "0.2", "PINLANDING_TITLE_LLM_CALLS": "4"}
PREPARE = """
import shutil, sys
from pathlib import Path
from pinlanding_assets.catalog.drops import write_fashion_drop
from pinlanding_assets.demand.intents import split_search_log
from pinlanding_assets.settings import get_paths
paths, out = get_paths(), Path(sys.argv[1])
for i, name in enumerate(["drop-001", "drop-002"]):
    write_fashion_drop(paths.fashion_catalog_dir, paths.landing_dir, name, i * 40, 40)
paths.search_log_dir.mkdir(parents=True, exist_ok=True)
for week in sorted(split_search_log(paths.shared_search_log, out / "weeks"))[:3]:
    shutil.copy(week, paths.search_log_dir / week.name)
"""


def digest(run: Path) -> dict[str, object]:
    """Table, site-file and weight digests of one finished run, its own directory written as <root>."""
    import polars as pl
    import torch

    warehouse, site = run / "data" / "warehouse", run / "data" / "site"
    thumbs = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in sorted((site / "thumbs").glob("*"))}

    def norm(text: str) -> str:
        text = text.replace(str(run), "<root>")
        for name, value in thumbs.items():
            text = text.replace(name, "thumb-" + value)
        return text

    out: dict[str, object] = {}
    for path in sorted(warehouse.rglob("*.parquet")):
        if ".staging" in path.parts or path.parent.suffix == ".parquet":
            continue
        frame = pl.read_parquet(path)
        frame = frame.select(sorted(frame.columns))
        text = norm("\n".join(sorted(repr(row) for row in frame.rows())))
        out[str(path.relative_to(warehouse))] = [frame.height, hashlib.sha256(text.encode()).hexdigest()[:16]]
    for path in sorted(p for p in site.rglob("*") if p.is_file() and p.parent.name != "thumbs"):
        data = path.read_bytes()
        try:
            data = norm(data.decode()).encode()
        except UnicodeDecodeError:
            pass
        out["site/" + str(path.relative_to(site))] = hashlib.sha256(data).hexdigest()[:16]
    out["site/thumbs"] = sorted(thumbs.values())
    for path in sorted((warehouse / "models").rglob("*.pt")):
        payload = torch.load(path, map_location="cpu", weights_only=False)
        weights = hashlib.sha256()
        for name, tensor in sorted(payload.pop("state_dict").items()):
            weights.update(name.encode())
            weights.update(tensor.cpu().numpy().tobytes())
        out["checkpoint/" + path.name] = [weights.hexdigest()[:16], norm(json.dumps(payload, sort_keys=True, default=str))]
    return out


def run_at(commit: str, work: Path) -> tuple[dict[str, object], float]:
    """`pinlanding run` of the commit's code (a temporary worktree) in a fresh data directory."""
    tree, run = work / f"tree-{commit}", work / f"run-{commit}"
    shutil.rmtree(run, ignore_errors=True)
    subprocess.run(["git", "worktree", "add", "-f", "--detach", str(tree), commit], cwd=ROOT, check=True,
                   capture_output=True)
    try:
        (run / "home").mkdir(parents=True)
        (run / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        env = {**os.environ, **SMALL, "PYTHONPATH": str(tree), "PINLANDING_DATA_DIR": str(run / "data"),
               "DAGSTER_HOME": str(run / "home"), "PINLANDING_MODEL_CACHE": str(work / "models")}
        for name in ("PINLANDING_LANDING_DIR", "PINLANDING_WAREHOUSE_DIR", "PINLANDING_SEARCH_LOG_DIR"):
            env.pop(name, None)
        subprocess.run([sys.executable, "-c", PREPARE, str(run)], cwd=tree, env=env, check=True)
        started = time.perf_counter()
        with (run / "run.log").open("w") as log:
            subprocess.run([Path(sys.executable).parent / "pinlanding", "run"], cwd=tree, env=env, check=True,
                           stdout=log, stderr=subprocess.STDOUT)
        return digest(run), time.perf_counter() - started
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True)
    parser.add_argument("--after", default="HEAD")
    parser.add_argument("--rename", action="append", default=[], help="OLD=NEW: an asset renamed by the change")
    parser.add_argument("--work", default="/tmp/same-outputs")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    revs = [subprocess.run(["git", "rev-parse", "--short", r], cwd=ROOT, check=True, capture_output=True,
                           text=True).stdout.strip() for r in (args.before, args.after)]
    (before, before_s), (after, after_s) = (run_at(rev, work) for rev in revs)
    for rename in args.rename:
        old, new = rename.split("=", 1)
        before = {key.replace(old, new): value for key, value in before.items()}
    differing = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    tables = [k for k in after if k.endswith(".parquet")]
    print(f"before {revs[0]}: pinlanding run {before_s:.0f} s; after {revs[1]}: {after_s:.0f} s (not a speed test)")
    print(f"warehouse tables {len(tables)}, site files {sum(k.startswith('site/') for k in after) - 1}, "
          f"thumbnails {len(after.get('site/thumbs', []))}, checkpoints {sum(k.startswith('checkpoint/') for k in after)}")
    for key in (k for k in after if k.startswith("checkpoint/")):
        print(f"{key}: weights {after[key][0]} (before {before.get(key, ['absent'])[0]})")
    print(f"identical: {len(set(before) | set(after)) - len(differing)} of {len(set(before) | set(after))}")
    if any(key.startswith("raw_vlm_attributes/") for key in differing):
        print("the VLM stage answered differently (the LLM on CPU is not always bit-reproducible): the tables "
              "downstream of it may differ for that reason alone; run again before blaming the change")
    for key in differing:
        print(f"DIFFERS {key}\n  before: {str(before.get(key))[:200]}\n  after:  {str(after.get(key))[:200]}")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
