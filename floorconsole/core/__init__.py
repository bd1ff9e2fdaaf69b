"""Pure domain: stdlib and numpy only."""
