"""Files and directories written whole: written under a hidden name beside their target and renamed
over it, so a reader in another process, or a crash, never meets half of one. Every writer of a file
another run or a reader may open goes through here: the IO manager, the encoder's checkpoints and
model config, the title cache, feeds, the site, drops and their markers, search-log weeks, model files."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

PathT = TypeVar("PathT", bound=Path)


@contextmanager
def written_whole(target: PathT, directory: bool = False) -> Iterator[PathT]:
    """A hidden path beside ``target`` to write (an empty directory if ``directory``), put in place of
    ``target`` when the block ends and removed if it raises: ``target`` keeps its old content then."""
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    Path(str(target)).parent.mkdir(parents=True, exist_ok=True)
    if directory:
        Path(str(staging)).mkdir()
    try:
        yield staging
        if directory:
            replace_directory(Path(str(staging)), Path(str(target)))
        else:
            os.replace(str(staging), str(target))
    finally:
        local = Path(str(staging))
        if local.is_dir():
            shutil.rmtree(local, ignore_errors=True)
        else:
            local.unlink(missing_ok=True)


def replace_directory(staging: Path, target: Path) -> None:
    """Swap a fully written ``staging`` directory in for ``target`` with two renames (the old copy is
    removed afterwards). A reader sees the old directory or the new one, never a mix of the two, but
    between the renames ``target`` is briefly absent: readers that may meet that retry or fail loudly."""
    old = target.with_name(f".{target.name}.{uuid.uuid4().hex}.old")
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
