"""The edges: the only modules that talk HTTP (api) or Docker (containers)."""
