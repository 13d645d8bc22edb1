"""How far each attribute can be trusted, estimated without ground truth, and what a collection may use.

The evidence is what the pipeline is allowed to see: for the release's products that training never
learnt from (the validation and holdout splits), the attribute stage's answers and the vocabulary
phrases their titles name. A product is judged on a facet when the attribute stage labelled it, or when
its title names a phrase of that facet ("Men Black Sports Shoes" judges category, colour and gender;
it says nothing about occasion, so a "party" assignment on it is not judged). Never the catalog's label
columns.

Per attribute, over the judged products it was assigned to, best score first:

    cut          the lowest score at which the share of agreeing products above it still passes the
                 target precision at its lower confidence bound (Wilson, ``z``): only products scoring
                 at least this carry the attribute in a collection
    precision    the share agreeing above the cut (the estimate), and its lower bound
    reliable     a cut exists; otherwise the attribute is left out, with its estimate as the reason.
                 A facet whose pooled estimate fails the same test is left out whole.
    confidence   a logistic map from score to the chance the attribute is right (Platt scaling,
                 L2-regularised toward the facet's pooled precision, so a handful of products cannot
                 make it certain): a product's joint confidence in a collection is the product of its
                 attributes' confidences, which ranks the feed and sets its floor.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from pinlanding_assets.encoder.pairs import HOLDOUT_SHARE, VALIDATION_SHARE, split_of, title_matches, vlm_pairs

RELIABILITY_SCHEMA = {
    "attribute_id": pl.Utf8, "facet": pl.Utf8, "phrase": pl.Utf8, "assigned": pl.Int64, "judged": pl.Int64,
    "judged_above_cut": pl.Int64, "agreeing": pl.Int64, "estimated_precision": pl.Float64,
    "lower_bound": pl.Float64, "cut": pl.Float64,
    "kept_products": pl.Int64, "reliable": pl.Boolean, "reason": pl.Utf8,
    "score_mean": pl.Float64, "score_scale": pl.Float64, "weight": pl.Float64, "bias": pl.Float64,
}
FACET_SCHEMA = {"facet": pl.Utf8, "attributes": pl.Int64, "reliable_attributes": pl.Int64, "judged": pl.Int64,
                "agreeing": pl.Int64, "estimated_precision": pl.Float64, "lower_bound": pl.Float64,
                "reliable": pl.Boolean, "reason": pl.Utf8}


@dataclass(frozen=True)
class ReliabilityConfig:
    target_precision: float = 0.9
    z: float = 1.0  # one-sided lower bound: about 84% confidence that the precision is at least the bound
    prior_strength: float = 4.0  # pseudo-products pulling a confidence toward its facet's pooled precision


def release_evidence(products: pl.DataFrame, raw: pl.DataFrame, vocabulary: pl.DataFrame, seed: int,
                     max_products: int = 20_000) -> tuple[pl.DataFrame, set[str]]:
    """(product_id, attribute_id) that the attribute stage or the title says, and the products the
    attribute stage labelled (judged on every facet), for the products training never learnt from (the
    validation and holdout splits of the encoder's ``seed``; at most ``max_products`` of them, by a hash
    of the id, so a large catalog's estimate costs what a small one's does). products: product_id,
    title; raw: the attribute stage's answers (product_id, facet, value)."""
    unseen = products.filter(pl.col("product_id").map_elements(
        lambda p: split_of(p, seed, HOLDOUT_SHARE, VALIDATION_SHARE) != "train", return_dtype=pl.Boolean))
    if unseen.height > max_products:
        labelled = pl.col("product_id").is_in(raw["product_id"].unique().to_list())
        key = pl.col("product_id").map_elements(lambda p: hashlib.sha1(f"evidence:{seed}:{p}".encode()).hexdigest(),
                                                 return_dtype=pl.Utf8)
        unseen = unseen.sort([labelled, key], descending=[True, False]).head(max_products)
    answers = raw.filter(pl.col("product_id").is_in(unseen["product_id"].to_list()))
    evidence = pl.concat([vlm_pairs(answers, vocabulary), title_matches(unseen, vocabulary)]).unique().sort(
        ["product_id", "attribute_id"])
    return evidence, set(answers["product_id"].to_list())


def wilson_lower_bound(agreeing: np.ndarray | int, judged: np.ndarray | int, z: float) -> np.ndarray:
    judged_f = np.maximum(np.asarray(judged, np.float64), 1e-12)
    share = np.asarray(agreeing, np.float64) / judged_f
    centre = share + z * z / (2 * judged_f)
    spread = z * np.sqrt(share * (1 - share) / judged_f + z * z / (4 * judged_f * judged_f))
    return np.where(np.asarray(judged) > 0, (centre - spread) / (1 + z * z / judged_f), 0.0)


def reaches(bound: np.ndarray | float, target: float) -> np.ndarray | bool:
    """A lower bound reaches the target, also when it equals it in exact arithmetic and falls a hair
    short in floating point (9 of 9 agreeing at z = 1 is exactly 0.9)."""
    return bound >= target - 1e-9


def judged_rows(assignments: pl.DataFrame, evidence: pl.DataFrame, fully_labelled: set[str],
                facets: dict[str, str]) -> pl.DataFrame:
    """The assignments of evidence products judged on the attribute's facet, with ``agrees``.

    assignments: product_id, attribute_id, score; evidence: product_id, attribute_id (what the
    attribute stage or the title says), for evidence products only."""
    facet_of = pl.DataFrame({"attribute_id": list(facets), "facet": list(facets.values())})
    said = evidence.join(facet_of, on="attribute_id")
    judged_facets = said.select("product_id", "facet").unique()
    products = evidence["product_id"].unique().to_list() + sorted(fully_labelled)
    rows = assignments.select("product_id", "attribute_id", "score").filter(
        pl.col("product_id").is_in(products)).join(facet_of, on="attribute_id")
    known = (pl.col("product_id").is_in(sorted(fully_labelled))) | pl.col("_judged").is_not_null()
    return (rows.join(judged_facets.with_columns(pl.lit(True).alias("_judged")), on=["product_id", "facet"], how="left")
            .filter(known)
            .join(said.select("product_id", "attribute_id").with_columns(pl.lit(True).alias("agrees")),
                  on=["product_id", "attribute_id"], how="left")
            .with_columns(pl.col("agrees").fill_null(False)).drop("_judged")
            .sort(["attribute_id", "score", "product_id"], descending=[False, True, False]))


def calibrated_cut(scores: np.ndarray, agrees: np.ndarray, config: ReliabilityConfig) -> int:
    """How many of the judged rows (best score first) to keep: the most whose agreement passes the
    target at its lower bound; 0 when none does."""
    hits = np.cumsum(agrees)
    counts = np.arange(1, len(agrees) + 1)
    passing = np.nonzero(reaches(wilson_lower_bound(hits, counts, config.z), config.target_precision))[0]
    if not len(passing):
        return 0
    keep = int(passing[-1]) + 1
    while keep < len(scores) and scores[keep] == scores[keep - 1]:  # a cut never splits equal scores
        keep -= 1
        if keep == 0:
            return 0
    return keep


def platt(scores: np.ndarray, agrees: np.ndarray, prior: float, strength: float) -> tuple[float, float, float, float]:
    """(mean, scale, weight, bias) of P(agrees | score) = sigmoid(weight * (score - mean) / scale + bias),
    fitted by Newton steps with an L2 pull of the bias toward logit(prior) and of the weight toward 0."""
    prior = min(max(prior, 0.02), 0.98)
    centre = math.log(prior / (1 - prior))
    if not len(scores):
        return 0.0, 1.0, 0.0, centre
    mean, scale = float(scores.mean()), float(max(scores.std(), 0.01))
    x = np.stack([(scores - mean) / scale, np.ones_like(scores)], axis=1)
    y = agrees.astype(np.float64)
    target = np.array([0.0, centre])
    theta = target.copy()
    for _ in range(50):
        p = 1 / (1 + np.exp(-(x @ theta)))
        gradient = x.T @ (p - y) + strength * (theta - target)
        hessian = (x.T * (p * (1 - p))) @ x + strength * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if np.abs(step).max() < 1e-9:
            break
    return round(mean, 6), round(scale, 6), round(float(theta[0]), 6), round(float(theta[1]), 6)


def estimate_reliability(assignments: pl.DataFrame, judged: pl.DataFrame, vocabulary: pl.DataFrame,
                         config: ReliabilityConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(per attribute, per facet) reliability; see the module docstring.

    assignments: product_id, attribute_id, score (every product of the release); judged: ``judged_rows``;
    vocabulary: the kept entries (attribute_id, facet, phrase)."""
    assigned = dict(assignments.group_by("attribute_id").len().iter_rows())
    facet_rows = []
    pooled: dict[str, tuple[int, int]] = {}
    for (facet,), part in judged.group_by(["facet"], maintain_order=True):
        pooled[facet] = (int(part["agrees"].sum()), part.height)
    rows = []
    parts = judged.partition_by("attribute_id", as_dict=True)
    empty = judged.clear()
    for entry in vocabulary.sort("attribute_id").iter_rows(named=True):
        aid, facet = entry["attribute_id"], entry["facet"]
        part = parts.get((aid,), empty)
        scores, agrees = part["score"].to_numpy().astype(np.float64), part["agrees"].to_numpy().astype(bool)
        keep = calibrated_cut(scores, agrees, config)
        facet_hits, facet_judged = pooled.get(facet, (0, 0))
        prior = (facet_hits + 1) / (facet_judged + 2)
        mean, scale, weight, bias = platt(scores, agrees, prior, config.prior_strength)
        row = {"attribute_id": aid, "facet": facet, "phrase": entry["phrase"], "assigned": assigned.get(aid, 0),
               "judged": len(scores), "score_mean": mean, "score_scale": scale, "weight": weight, "bias": bias}
        if keep:
            hits = int(agrees[:keep].sum())
            cut = float(scores[keep - 1])
            row |= {"judged_above_cut": keep, "agreeing": hits, "estimated_precision": round(hits / keep, 4),
                    "lower_bound": round(float(wilson_lower_bound(hits, keep, config.z)), 4), "cut": cut,
                    "reliable": True, "reason": None}
        else:
            hits = int(agrees.sum())
            share = hits / len(scores) if len(scores) else None
            bound = round(float(wilson_lower_bound(hits, len(scores), config.z)), 4)
            row |= {"judged_above_cut": 0, "agreeing": hits,
                    "estimated_precision": None if share is None else round(share, 4),
                    "lower_bound": bound, "cut": None, "reliable": False,
                    "reason": ("no judged product: nothing the attribute stage or a title says can check it"
                               if not len(scores) else
                               f"estimated precision {share:.2f} ({hits} of {len(scores)} judged products agree; "
                               f"lower bound {bound:.2f}) under the target {config.target_precision}")}
        rows.append(row)
    table = pl.DataFrame(rows, schema={k: v for k, v in RELIABILITY_SCHEMA.items() if k != "kept_products"})
    kept = reliable_assignments(assignments, table).group_by("attribute_id").len().rename({"len": "kept_products"})
    table = table.join(kept, on="attribute_id", how="left").with_columns(pl.col("kept_products").fill_null(0))
    for facet in sorted(set(table["facet"])):
        part = table.filter(pl.col("facet") == facet)
        good = part.filter(pl.col("reliable"))
        hits, count = int(good["agreeing"].sum()), int(good["judged_above_cut"].sum())
        bound = round(float(wilson_lower_bound(hits, count, config.z)), 4) if count else 0.0
        ok = bool(count) and bool(reaches(bound, config.target_precision))
        facet_rows.append({
            "facet": facet, "attributes": part.height, "reliable_attributes": good.height, "judged": count,
            "agreeing": hits, "estimated_precision": round(hits / count, 4) if count else None, "lower_bound": bound,
            "reliable": ok, "reason": None if ok else (
                f"no attribute of the facet passes the target {config.target_precision}" if not count else
                f"pooled estimated precision {hits / count:.2f} (lower bound {bound:.2f}) under the target "
                f"{config.target_precision}")})
    facets = pl.DataFrame(facet_rows, schema=FACET_SCHEMA)
    unreliable = facets.filter(~pl.col("reliable"))
    if unreliable.height:
        reasons = dict(zip(unreliable["facet"], unreliable["reason"]))
        table = table.with_columns(
            pl.when(pl.col("facet").is_in(list(reasons))).then(False).otherwise(pl.col("reliable")).alias("reliable"),
            pl.when(pl.col("facet").is_in(list(reasons)) & pl.col("reason").is_null())
            .then(pl.format("facet {}: {}", "facet", pl.col("facet").replace_strict(reasons, default=None)))
            .otherwise(pl.col("reason")).alias("reason"))
    return table.select(list(RELIABILITY_SCHEMA)).sort("attribute_id"), facets


def reliable_assignments(assignments: pl.DataFrame, reliability: pl.DataFrame) -> pl.DataFrame:
    """The assignments a collection may use: reliable attributes, at or above their cut."""
    cuts = reliability.filter(pl.col("reliable")).select("attribute_id", "cut")
    return assignments.join(cuts, on="attribute_id").filter(pl.col("score") >= pl.col("cut")).drop("cut")
