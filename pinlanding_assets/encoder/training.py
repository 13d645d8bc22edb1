"""Contrastive training of the dual encoder on frozen towers with cached features.

Supervision (never the ground-truth labels):
- (product image, product title) pairs, trained with open_clip's ``ClipLoss``;
- (product, attribute) pairs: the VLM stage's attributes mapped onto the curated vocabulary, plus
  vocabulary phrases found verbatim in the product's title; trained as a multi-positive softmax of
  the product (fused, and image alone) against every vocabulary phrase. A product the VLM stage
  labelled is judged on every facet; a product known only from its title is judged only on the facets
  its title names: the title "Nike Men Black Shoes" says nothing about the occasion, so "casual" is
  not a negative for it (otherwise the model learns that the occasions titles never name are rare).

By default only open_clip's projection heads, the colour map and the logit scale train; the towers stay frozen, so each
tower runs once per product (cached features) and an epoch is a few matrix products on 2 cores.
``unfreeze_image_blocks=N`` also trains the last N stages of the image trunk (and its conv head):
the cache then holds the activations before those stages, and each step runs only the open part.
Batch-norm statistics stay frozen either way (the towers run in eval mode).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F

from pinlanding_assets.encoder.pairs import HOLDOUT_SHARE, VALIDATION_SHARE, split_of, title_matches, vlm_pairs
from pinlanding_assets.facets import kept_vocabulary
from pinlanding_assets.progress import Progress


@dataclass(frozen=True)
class TrainingConfig:
    seed: int = 0
    max_products: int = 3000
    holdout_share: float = HOLDOUT_SHARE
    validation_share: float = VALIDATION_SHARE
    epochs: int = 80
    patience: int = 8
    batch_size: int = 128
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    unfreeze_image_blocks: int = 0
    trunk_learning_rate: float = 1e-4


@dataclass
class FeatureCache:
    """Frozen-tower features: one row per product, one per vocabulary phrase."""

    product_ids: list[str]
    image: torch.Tensor  # (n, image_dim), or (n, c, h, w) activations when image blocks are unfrozen
    has_image: torch.Tensor  # (n,) bool
    title: torch.Tensor  # (n, text_dim)
    attribute_ids: list[str]
    phrases: torch.Tensor  # (m, text_dim)
    positives: torch.Tensor  # (n, m) float 0/1
    known: torch.Tensor | None = None  # (n, m) bool: attributes whose facet is known for the product (None: all)
    splits: list[str] = field(default_factory=list)
    open_blocks: int = 0
    colour: torch.Tensor | None = None  # (n, colour bins): the colour descriptor (None: the spec has none)

    def image_vectors(self, encoder, index: torch.Tensor) -> torch.Tensor:
        """Unit image vectors of the products at ``index`` (through the unfrozen stages, if any)."""
        features = encoder.image_tail(self.image[index], self.open_blocks)
        if self.colour is not None:
            features = torch.cat([features, self.colour[index]], dim=-1)
        return encoder.image_head(features)


def recall_at_k(scores: torch.Tensor, positives: torch.Tensor, k: int = 10) -> float:
    """Mean over products with positives of |positives in top k| / |positives|."""
    mask = positives.sum(-1) > 0
    if not mask.any():
        return 0.0
    top = scores[mask].topk(min(k, scores.shape[1]), dim=-1).indices
    hits = positives[mask].gather(1, top).sum(-1)
    return float((hits / positives[mask].sum(-1).clamp(max=k)).mean())


def _multi_positive_loss(logits: torch.Tensor, positives: torch.Tensor, known: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax of each product over the attributes it is judged on (``known``), mass on its positives."""
    mask = positives.sum(-1) > 0
    if not mask.any():
        return logits.sum() * 0
    if known is not None:
        logits = logits.masked_fill(~known, float("-inf"))
    target = positives[mask] / positives[mask].sum(-1, keepdim=True)
    log_probs = F.log_softmax(logits[mask], dim=-1).masked_fill(target == 0, 0.0)
    return -(target * log_probs).sum(-1).mean()


@dataclass
class TrainingReport:
    epochs_run: int
    best_epoch: int
    train_loss: list[float]
    validation_loss: list[float]
    validation_recall_at_10: list[float]
    best_validation_recall_at_10: float
    train_products: int
    validation_products: int
    pairs: int


def train_heads(encoder, cache: FeatureCache, config: TrainingConfig,
                progress: Callable[[str], None] | None = None) -> TrainingReport:
    """Train the projection heads (and the colour map, and any unfrozen image stages) and the logit
    scale with early stopping on validation Recall@10; ``progress`` gets a line every 10 epochs (the
    run's log in Dagster)."""
    from open_clip.loss import ClipLoss

    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    model = encoder.model
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    heads = [*model.visual.head.parameters(), *model.text.proj.parameters(), model.logit_scale]
    if encoder.spec.colour_descriptor:
        heads += list(model.visual.colour_proj.parameters())
    trunk = encoder.open_image_parameters(cache.open_blocks)
    for parameter in [*heads, *trunk]:
        parameter.requires_grad_(True)
    groups = [{"params": heads, "lr": config.learning_rate}]
    if trunk:
        groups.append({"params": trunk, "lr": config.trunk_learning_rate})
    optimiser = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    clip_loss = ClipLoss()
    train = torch.tensor([s == "train" for s in cache.splits])
    valid = torch.tensor([s == "validation" for s in cache.splits])
    train_index = train.nonzero().squeeze(-1)

    def losses(index: torch.Tensor) -> torch.Tensor:
        image = cache.image_vectors(encoder, index)
        title = encoder.text_head(cache.title[index])
        phrases = encoder.text_head(cache.phrases)
        scale = model.logit_scale.exp().clamp(max=100)
        fused = encoder.fuse(image, title, cache.has_image[index])
        with_image = cache.has_image[index]
        pair_loss = clip_loss(image[with_image], title[with_image], scale) if with_image.sum() > 1 else scale * 0
        positives = cache.positives[index]
        known = cache.known[index] if cache.known is not None else None
        return (pair_loss + _multi_positive_loss(scale * fused @ phrases.T, positives, known)
                + _multi_positive_loss(scale * image @ phrases.T, positives * with_image.unsqueeze(-1), known))

    def validation_recall() -> float:
        with torch.no_grad():
            index = valid.nonzero().squeeze(-1)
            fused = encoder.fuse(cache.image_vectors(encoder, index), encoder.text_head(cache.title[index]),
                                 cache.has_image[index])
            return recall_at_k(fused @ encoder.text_head(cache.phrases).T, cache.positives[index])

    best_state, best_recall, best_epoch, stale = None, -1.0, 0, 0
    train_curve, valid_curve, recall_curve = [], [], []
    generator = torch.Generator().manual_seed(config.seed)
    model.eval()  # the heads have no dropout or batch norm; the towers keep their statistics
    for epoch in range(1, config.epochs + 1):
        order = train_index[torch.randperm(len(train_index), generator=generator)]
        epoch_losses = []
        for start in range(0, len(order), config.batch_size):
            loss = losses(order[start : start + config.batch_size])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            epoch_losses.append(loss.item())
        with torch.no_grad():
            valid_loss = float(losses(valid.nonzero().squeeze(-1)))
        recall = validation_recall()
        train_curve.append(round(float(np.mean(epoch_losses)), 5))
        valid_curve.append(round(valid_loss, 5))
        recall_curve.append(round(recall, 5))
        if progress and epoch % 10 == 0:
            progress(f"epoch {epoch}/{config.epochs}: train loss {train_curve[-1]:.4f}, "
                     f"validation Recall@10 {recall:.4f} (best {max(best_recall, recall):.4f})")
        if recall > best_recall + 1e-4:
            best_recall, best_epoch, stale = recall, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= config.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return TrainingReport(
        epochs_run=len(train_curve), best_epoch=best_epoch, train_loss=train_curve, validation_loss=valid_curve,
        validation_recall_at_10=recall_curve, best_validation_recall_at_10=round(best_recall, 4),
        train_products=int(train.sum()), validation_products=int(valid.sum()),
        pairs=int(cache.positives[train | valid].sum()),
    )


def load_pixels(paths: list[str], preprocess) -> tuple[torch.Tensor, torch.Tensor]:
    """Preprocessed images and a mask of those that could be read (the rest are zeros)."""
    from PIL import Image

    tensors, ok = [], []
    for path in paths:
        try:
            with Image.open(path) as image:
                tensors.append(preprocess(image.convert("RGB")))
                ok.append(True)
        except Exception:
            tensors.append(None)
            ok.append(False)
    blank = torch.zeros_like(preprocess(Image.new("RGB", (8, 8))))
    return torch.stack([blank if t is None else t for t in tensors]), torch.tensor(ok)


def known_attributes(positives: torch.Tensor, facets: list[str], fully_labelled: torch.Tensor) -> torch.Tensor:
    """(n, m) bool: every attribute of a fully labelled product; otherwise those of the facets it has a positive in."""
    names = sorted(set(facets))
    facet_of = torch.tensor([names.index(f) for f in facets])
    one_hot = F.one_hot(facet_of, len(names)).float()  # (m, facets)
    facet_known = (positives @ one_hot) > 0  # (n, facets)
    return facet_known[:, facet_of] | fully_labelled.unsqueeze(-1)


def select_training_products(products: pl.DataFrame, labelled: set[str], config: TrainingConfig) -> pl.DataFrame:
    """The products training may see (never the holdout) with their split: labelled ones first, then
    by a seeded hash, at most ``max_products``, sorted by id."""
    products = products.with_columns(
        pl.col("product_id").map_elements(
            lambda pid: split_of(pid, config.seed, config.holdout_share, config.validation_share), return_dtype=pl.Utf8
        ).alias("split"),
        pl.col("product_id").map_elements(
            lambda pid: hashlib.sha1(f"pick:{config.seed}:{pid}".encode()).hexdigest(), return_dtype=pl.Utf8
        ).alias("_key"),
    ).filter(pl.col("split") != "holdout")
    return products.with_columns(pl.col("product_id").is_in(list(labelled)).alias("_labelled")).sort(
        ["_labelled", "_key"], descending=[True, False]).head(config.max_products).sort("product_id").drop(
        "_labelled", "_key")


def positives_matrix(product_ids: list[str], attribute_ids: list[str], pairs: pl.DataFrame) -> torch.Tensor:
    """(n, m) 0/1: which (product, attribute) pairs are positives."""
    column = {aid: j for j, aid in enumerate(attribute_ids)}
    row = {pid: i for i, pid in enumerate(product_ids)}
    positives = torch.zeros(len(product_ids), len(attribute_ids))
    for pid, aid in pairs.select("product_id", "attribute_id").iter_rows():
        if pid in row and aid in column:
            positives[row[pid], column[aid]] = 1.0
    return positives


def build_feature_cache(
    encoder, products: pl.DataFrame, pairs: pl.DataFrame, vocabulary: pl.DataFrame, config: TrainingConfig,
    batch_size: int = 32, fully_labelled: set[str] | None = None, on_products: Callable[[int], None] | None = None,
) -> FeatureCache:
    """Pick the training products (never the holdout), run both frozen towers once, build positives.
    ``fully_labelled``: products whose every facet is known (the VLM labelled them); None = all."""
    products = select_training_products(products, set(pairs["product_id"]), config)
    kept = kept_vocabulary(vocabulary).sort("attribute_id")
    attribute_ids = kept["attribute_id"].to_list()
    positives = positives_matrix(products["product_id"].to_list(), attribute_ids, pairs)

    image_parts, colour_parts, mask_parts, title_parts = [], [], [], []
    paths, titles = products["image_path"].to_list(), products["title"].to_list()
    for start in range(0, products.height, batch_size):
        pixels, ok = load_pixels(paths[start : start + batch_size], encoder.preprocess)
        image_parts.append(encoder.image_stem_features(pixels, config.unfreeze_image_blocks))
        colour_parts.append(encoder.colour_features(pixels))
        mask_parts.append(ok)
        title_parts.append(encoder.text_trunk_features(titles[start : start + batch_size]))
        if on_products:
            on_products(len(ok))
    has_image = torch.cat(mask_parts)
    if "is_blank" in products.columns:
        has_image &= ~torch.tensor(products["is_blank"].fill_null(False).to_list())
    return FeatureCache(
        product_ids=products["product_id"].to_list(), image=torch.cat(image_parts), has_image=has_image,
        title=torch.cat(title_parts), attribute_ids=attribute_ids,
        phrases=encoder.text_trunk_features(kept["phrase"].to_list()), positives=positives,
        known=None if fully_labelled is None else known_attributes(
            positives, kept["facet"].to_list(), torch.tensor([pid in fully_labelled for pid in products["product_id"]])),
        splits=products["split"].to_list(), open_blocks=config.unfreeze_image_blocks,
        colour=torch.cat(colour_parts) if encoder.spec.colour_descriptor else None,
    )


@dataclass
class TrainedEncoder:
    """What training produces: the model with its spec, the report, calibrated per-attribute
    thresholds and the image preprocessing the checkpoint must carry."""

    encoder: object  # DualEncoder
    report: TrainingReport
    thresholds: dict[str, float]
    preprocess_cfg: dict


def train_dual_encoder(
    products: pl.DataFrame, raw: pl.DataFrame, vocabulary: pl.DataFrame, spec, config: TrainingConfig,
    open_clip_cache: Path, progress: Callable[[str], None] | None = None,
) -> TrainedEncoder:
    """Training pairs (VLM attributes and title phrases on the vocabulary), cached tower features,
    trained heads and thresholds calibrated on the validation split: the whole of training, no I/O."""
    import open_clip

    from pinlanding_assets.encoder.assignments import calibrate_thresholds
    from pinlanding_assets.encoder.model import DualEncoder

    pairs = pl.concat([vlm_pairs(raw, vocabulary),
                       title_matches(products, vocabulary)]).unique().sort(["product_id", "attribute_id"])
    encoder = DualEncoder(spec, open_clip_cache)
    cached = Progress(progress, f"{pairs.height} training pairs; tower features",
                      min(products.height, config.max_products))
    cache = build_feature_cache(encoder, products, pairs, vocabulary, config,
                                fully_labelled=set(raw["product_id"].to_list()), on_products=cached.add)
    report = train_heads(encoder, cache, config, progress)
    valid = torch.tensor([s == "validation" for s in cache.splits])
    with torch.no_grad():
        index = valid.nonzero().squeeze(-1)
        scores = (encoder.fuse(cache.image_vectors(encoder, index), encoder.text_head(cache.title[index]),
                               cache.has_image[index]) @ encoder.text_head(cache.phrases).T).numpy()
    thresholds = calibrate_thresholds(scores, cache.positives[index].numpy(), cache.attribute_ids)
    return TrainedEncoder(encoder, report, thresholds, open_clip.get_model_preprocess_cfg(encoder.model))


def holdout_products(products: pl.DataFrame, config: TrainingConfig) -> pl.DataFrame:
    """The products training never saw (split by a hash of the id), sorted for evaluation."""
    return products.filter(pl.col("product_id").map_elements(
        lambda pid: split_of(pid, config.seed, config.holdout_share, config.validation_share) == "holdout",
        return_dtype=pl.Boolean)).sort("product_id")
