"""What several commands read from their arguments the same way."""

from __future__ import annotations

import argparse
from pathlib import Path


def data_dir_of(args: argparse.Namespace, error: type[Exception]) -> Path:
    """The data directory from --data-dir, or from the plant file given with -c; `error`
    (the command's own user-error type) with one line when neither is given or the plant
    file cannot be read."""
    if getattr(args, "data_dir", None):
        return Path(args.data_dir)
    if getattr(args, "config", None):
        from floorconsole.core.config import PlantError, load_plant

        try:
            return load_plant(args.config).edge.data_dir
        except PlantError as e:
            raise error(f"{e.source}: {'; '.join(map(str, e.problems))}") from None
    raise error("give -c PLANT.toml or --data-dir DIR to find the data directory")
