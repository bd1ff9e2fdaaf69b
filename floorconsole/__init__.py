"""floorconsole: a plant-floor console for live signals, an edge model, control rules and snapshots."""

__version__ = "0.1.0"
