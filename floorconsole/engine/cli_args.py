"""What several commands read from their arguments the same way."""

from __future__ import annotations

import argparse
from pathlib import Path


def zone_of(args: argparse.Namespace) -> str:
    """The zone a command prints times in: the plant file's [edge] timezone when -c is given
    (the console shows the same), else UTC."""
    if getattr(args, "config", None):
        from floorconsole.core.config import PlantError, load_plant

        try:
            return load_plant(args.config).edge.timezone
        except PlantError:
            return "UTC"  # data_dir_of says what is wrong with the file
    return "UTC"


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
