"""Tests of the container side: ContainerSpec, additional files, DockerRunner on the real engine, the chest X-ray example."""
