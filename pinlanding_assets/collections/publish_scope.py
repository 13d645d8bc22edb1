"""Which drops a release publishes: only those scored with that very release, never a mix.

A drop scored with another release, or with no assignments at all (its intake or scoring failed or is
still running), is left out, with the reason, so one broken drop holds back nothing but itself.
"""

from __future__ import annotations

import polars as pl

from pinlanding_assets.partitions import concat_partitions

EXCLUSION_SCHEMA = {"drop": pl.Utf8, "reason": pl.Utf8}


class MixedReleaseError(RuntimeError):
    """The release cannot be published without mixing: nothing of it is there, or some drop is still
    scored with another release (or not scored yet)."""


def require_settled(release: str, states) -> None:
    """Refuse to publish ``release`` while any drop is neither scored with it nor failed: on every path
    (automation, UI, CLI) the site keeps the previous release until the re-scoring is done."""
    waiting = [s for s in states if not s.settled]
    if waiting:
        detail = "; ".join(f"{s.drop}: " + (f"scored with {s.release}" if s.release else "not scored yet")
                           for s in waiting)
        raise MixedReleaseError(f"release {release} cannot be published yet: {detail}. Re-score those drops "
                                "(`pinlanding run --from-stage scoring`); the published site stays as it is.")


def _releases(frame: pl.DataFrame | pl.LazyFrame) -> list[str]:
    if "release" not in frame.collect_schema().names():
        return []
    found = frame.select(pl.col("release").unique())
    return sorted(str(r) for r in (found.collect() if isinstance(found, pl.LazyFrame) else found)["release"])


def of_release(frames: dict, release: str, drops: list[str]):
    """(the rows of every drop made with ``release``, the drops left out and why). ``drops`` are the
    registered drops in landing order: of a product in several kept drops, the newest drop's rows count.
    A frame without a ``release`` column predates releases and never qualifies. Lazy frames (per-product
    tables too big to load) stay lazy."""
    kept, left_out = {}, []
    for drop in sorted(set(drops) | set(frames)):
        frame = frames.get(drop)
        if frame is None:
            left_out.append({"drop": drop, "reason": "no assignments: its intake or scoring failed or has not run"})
            continue
        made_by = _releases(frame)
        if made_by == [release]:
            kept[drop] = frame
        else:
            label = ", ".join(str(r) for r in made_by) or "no release"
            left_out.append({"drop": drop, "reason": f"scored with {label}, not {release}: its re-scoring failed or "
                                                      "has not run"})
    if not kept:
        raise MixedReleaseError(f"no drop is scored with release {release}; "
                                + "; ".join(f"{e['drop']}: {e['reason']}" for e in left_out))
    return concat_partitions(kept, drops), pl.DataFrame(left_out, schema=EXCLUSION_SCHEMA)
