"""Where PinLanding keeps its files, from environment variables with project-local defaults.

One place decides the paths so the CLI, the assets and the tests agree on them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Paths:
    """Directories the pipeline reads from and writes to."""

    data_dir: Path
    landing_dir: Path
    warehouse_dir: Path
    shared_data_dir: Path

    @property
    def fashion_catalog_dir(self) -> Path:
        return self.shared_data_dir / "fashion-product-images"

    @property
    def search_log_dir(self) -> Path:
        return self.shared_data_dir / "aol-fashion-queries"


def get_paths() -> Paths:
    """Resolve paths now (not at import) so tests can point them at temporary directories."""
    data_dir = Path(os.environ.get("PINLANDING_DATA_DIR", PROJECT_ROOT / "data")).resolve()
    return Paths(
        data_dir=data_dir,
        landing_dir=Path(os.environ.get("PINLANDING_LANDING_DIR", data_dir / "landing")).resolve(),
        warehouse_dir=Path(os.environ.get("PINLANDING_WAREHOUSE_DIR", data_dir / "warehouse")).resolve(),
        shared_data_dir=Path(
            os.environ.get("PINLANDING_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data")
        ).resolve(),
    )
