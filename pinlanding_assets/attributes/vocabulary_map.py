"""A 2-D UMAP map of the kept vocabulary, coloured by facet: merchandisers see what sits near what."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl


def vocabulary_map(kept: pl.DataFrame, encode: Callable[[list[str]], np.ndarray], seed: int = 0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(9, 7))
    phrases = kept["phrase"].to_list()
    if len(phrases) >= 5:
        import umap

        vectors = encode(phrases)
        layout = umap.UMAP(n_neighbors=min(15, len(phrases) - 1), min_dist=0.3, metric="cosine",
                           random_state=seed).fit_transform(vectors)
        facets = kept["facet"].to_list()
        for facet in sorted(set(facets)):
            index = [i for i, f in enumerate(facets) if f == facet]
            axis.scatter(layout[index, 0], layout[index, 1], label=facet, s=18)
        top = np.argsort(-kept["support"].to_numpy(), kind="stable")[:40]
        for i in top:
            axis.annotate(phrases[i], layout[i], fontsize=7, alpha=0.8)
        axis.legend(fontsize=8, loc="best")
    axis.set_title(f"Curated vocabulary ({len(phrases)} attributes), UMAP of MiniLM embeddings")
    axis.set_xticks([])
    axis.set_yticks([])
    return figure
