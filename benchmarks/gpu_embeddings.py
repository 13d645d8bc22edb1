"""Product-embedding throughput of the dual encoder on whatever device torch sees (a lent GPU, or the CPU).

Two figures, images per second:
  end to end   decode + open_clip preprocessing in DataLoader workers -> fused image+title embedding
  model only   the same batches already on the device (what the model stage of the Ray job can reach)

    .venv/bin/python benchmarks/gpu_embeddings.py --limit 512
    python3 benchmarks/gpu_embeddings.py --images DIR --text-tower DIR --random-weights   # on a GPU box

``--random-weights`` builds the same architecture without loading weights (a lent GPU machine has no
weight packages); speed does not depend on the weight values. bf16 autocast on CUDA.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pinlanding_assets.encoder.model import DualEncoder  # noqa: E402
from pinlanding_assets.encoder.records import EncoderSpec  # noqa: E402


class Products(torch.utils.data.Dataset):
    def __init__(self, rows: list[tuple[str, str]], preprocess) -> None:
        self.rows, self.preprocess = rows, preprocess

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        from PIL import Image

        path, title = self.rows[i]
        with Image.open(path) as image:
            return self.preprocess(image.convert("RGB")), title


def products_in(images: Path, limit: int) -> list[tuple[str, str]]:
    titles = {}
    table = images.parent / "catalog.csv"
    if table.is_file():
        with table.open(newline="", encoding="utf-8", errors="replace") as handle:
            for row in csv.reader(handle):
                if row and row[0].isdigit():
                    titles[row[0]] = ",".join(row[9:])
    files = sorted(images.glob("*.jpg"))[:limit]
    return [(str(f), titles.get(f.stem, f.stem)) for f in files]


def encode(encoder: DualEncoder, pixels: torch.Tensor, titles: list[str]) -> torch.Tensor:
    image = encoder.image_head(encoder.image_features(pixels))
    title = encoder.text_head(encoder.text_trunk_features(titles))
    return encoder.fuse(image, title, torch.ones(len(titles), dtype=torch.bool, device=image.device))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", help="folder of product images (default: the shared Fashion catalog)")
    parser.add_argument("--text-tower", help="MiniLM config/tokenizer folder (default: the offline package)")
    parser.add_argument("--random-weights", action="store_true")
    parser.add_argument("--limit", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()

    if args.images:
        images = Path(args.images)
    else:
        from pinlanding_assets.settings import get_paths

        images = get_paths().fashion_catalog_dir / "images"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name(0) if device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    encoder = DualEncoder(EncoderSpec(), Path(tempfile.mkdtemp()), device=device,
                          text_tower_dir=Path(args.text_tower) if args.text_tower else None,
                          random_weights=args.random_weights)
    rows = products_in(images, args.limit)
    loader = torch.utils.data.DataLoader(Products(rows, encoder.preprocess), batch_size=args.batch,
                                         num_workers=args.workers, pin_memory=device == "cuda")
    autocast = torch.autocast(device_type="cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast(
        device_type="cpu", enabled=False)
    print(f"device: {name}; torch {torch.__version__}; {len(rows)} products, batch {args.batch}, "
          f"{args.workers} loader workers", flush=True)

    with torch.no_grad(), autocast:
        batches = []
        started = time.perf_counter()
        for pixels, titles in loader:
            pixels = pixels.to(device, non_blocking=True)
            encode(encoder, pixels, list(titles))
            batches.append((pixels, list(titles)))
        if device == "cuda":
            torch.cuda.synchronize()
        first = time.perf_counter() - started
        started = time.perf_counter()
        for pixels, titles in loader:
            encode(encoder, pixels.to(device, non_blocking=True), list(titles))
        if device == "cuda":
            torch.cuda.synchronize()
        end_to_end = time.perf_counter() - started
        repeats = 3
        started = time.perf_counter()
        for _ in range(repeats):
            for pixels, titles in batches:
                encode(encoder, pixels, titles)
        if device == "cuda":
            torch.cuda.synchronize()
        model_only = (time.perf_counter() - started) / repeats
    print(f"first pass (warm-up included): {len(rows) / first:9.1f} images/s")
    print(f"end to end (decode + preprocess in {args.workers} workers -> fused embedding): "
          f"{len(rows) / end_to_end:9.1f} images/s")
    print(f"model only (batches on the device): {len(rows) / model_only:9.1f} images/s")
    if device == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
