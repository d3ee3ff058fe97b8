"""The only package that changes the registry, the Docker engine or the state dir for a Plan."""
