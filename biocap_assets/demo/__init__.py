"""The synthetic mini tree of life (see world.py)."""
