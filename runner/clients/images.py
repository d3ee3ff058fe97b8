"""An image in the engine, as the container record pins it: a DockerImage found locally (by reference or by
registry digest) or pulled by digest once its registry confirms the tag; a DockerArchive fetched, SHA-256 checked,
loaded and remembered by hash. Used by runner/clients/containers.py, which runs the tasks."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from pathlib import Path

from runner.clients.files import download
from runner.container_spec import ContainerSpec
from runner.errors import ContainerError, ImageMismatch


def ensure_image(client, spec: ContainerSpec, archives: Path,
                 on_progress: Callable[[int, int], None] | None = None) -> str:
    """Return the reference to run `spec` by, once the engine holds the registered image (see check_image);
    ImageMismatch naming both values when it does not, before anything is pulled, loaded or run."""
    where = f"container {spec.name}"
    if spec.is_archive:
        return _archive_image(client, spec, archives, where, on_progress)
    return _registry_image(client, spec, where, on_progress)


def _registry_image(client, spec: ContainerSpec, where: str, on_progress) -> str:
    import docker

    repo, tag = _split_reference(spec.image)
    by_digest = f"{repo}@{spec.image_hash}"
    image = _get(client, spec.image)
    if image is not None and _identity_matches(image, spec.image_hash):
        return spec.image
    pinned = _get(client, by_digest) if not tag.startswith("sha256:") else None
    if pinned is not None:
        return by_digest  # pulled by digest before (no tag points at it), or the tag moved on locally
    if image is not None:
        digests = [d.split("@", 1) for d in image.attrs.get("RepoDigests") or [] if "@" in d]
        same_repo = [d for r, d in digests if r == repo]
        observed = (same_repo or [d for _, d in digests] or [image.id])[0]
        raise ImageMismatch(f"image {spec.image} is {observed}, but the container record expects "
                            f"{spec.image_hash}", where=where,
                            hint="the local image is not the one registered: remove or re-tag it so the "
                                 "registered one is pulled, or register this one")
    registry = docker.auth.resolve_repository_name(repo)[0]
    if not tag.startswith("sha256:"):
        answered = _registry_digest(client, spec, registry, where)
        if answered != spec.image_hash:
            raise ImageMismatch(f"registry {registry} answers {answered} for {spec.image}, but the container "
                                f"record expects {spec.image_hash}; nothing was pulled or run", where=where,
                                hint="the tag now names another image: ask the container's owner to register "
                                     "the new digest, or to push the registered image back under this tag")
    elif tag != spec.image_hash:
        raise ImageMismatch(f"image {spec.image} is pinned to {tag}, but the container record expects "
                            f"{spec.image_hash}", where=where, hint="the record is inconsistent: ask its owner")
    _pull(client, repo, spec, registry, where, on_progress)
    pulled = _get(client, by_digest)
    if pulled is None or not _identity_matches(pulled, spec.image_hash):
        raise ImageMismatch(f"pulling {by_digest} from {registry} did not give an image with digest "
                            f"{spec.image_hash}", where=where, hint="check the registry")
    return by_digest

def _registry_digest(client, spec: ContainerSpec, registry: str, where: str) -> str:
    """The manifest digest the registry serves for the reference's tag (the engine asks, with the manifest
    types it accepts, so the digest is the one a push reported)."""
    import docker

    try:
        return client.images.get_registry_data(spec.image).id
    except docker.errors.NotFound as e:
        raise ContainerError(f"registry {registry} has no image {spec.image}: {e.explanation or e}",
                             image=spec.image, where=where,
                             hint="ask the container's owner to push it, or check the reference") from e
    except docker.errors.APIError as e:
        raise ContainerError(f"cannot reach the image registry {registry} for {spec.image}, which is not "
                             f"present locally: {e.explanation or e}", image=spec.image, where=where,
                             hint=f"check that {registry} answers (network, proxy, credentials: docker login "
                                  f"{registry}), then run again") from e

def _pull(client, repo: str, spec: ContainerSpec, registry: str, where: str, on_progress) -> None:
    """Pull repo@image_hash, streaming the layers' bytes to on_progress; an error in the stream is raised."""
    import docker

    layers: dict[str, tuple[int, int]] = {}
    try:
        for event in client.api.pull(repo, tag=spec.image_hash, stream=True, decode=True):
            if "error" in event:
                raise ContainerError(f"pulling {repo}@{spec.image_hash} from {registry} failed: "
                                     f"{event['error']}", image=spec.image, where=where,
                                     hint=f"check that {registry} answers and holds the image, then run again")
            _count_layer(layers, event)
            if on_progress is not None and layers:
                on_progress(sum(d for d, _ in layers.values()), sum(t for _, t in layers.values()))
    except docker.errors.APIError as e:
        raise ContainerError(f"cannot pull {repo}@{spec.image_hash} from {registry}: {e.explanation or e}",
                             image=spec.image, where=where,
                             hint=f"check that {registry} answers and holds the image, then run again") from e

def _archive_image(client, spec: ContainerSpec, cache: Path, where: str, on_progress) -> str:
    """Fetch the DockerArchive, check its SHA-256, `docker load` it; the image id is remembered by hash."""
    digest = spec.image_hash.split(":", 1)[1]
    marker = cache / f"{digest}.image"
    if marker.is_file():
        image_id = marker.read_text(encoding="utf-8").strip()
        if image_id and _get(client, image_id) is not None:
            return image_id
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / f".{digest}.{secrets.token_hex(4)}.tar"
    try:
        got = download(spec.image, tarball, where=where, what="image archive", on_progress=on_progress)
        if got != digest:
            raise ImageMismatch(f"image archive {spec.image} has SHA-256 {got}, but the container record "
                                f"expects {digest}; it was not loaded", where=where,
                                hint="the archive changed since the container was registered: ask its owner to "
                                     "register the new one")
        with open(tarball, "rb") as f:
            loaded = client.images.load(f)
    finally:
        tarball.unlink(missing_ok=True)
    if not loaded:
        raise ContainerError(f"image archive {spec.image} holds no image", image=spec.image, where=where)
    image_id = loaded[0].id
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(image_id + "\n", encoding="utf-8")
    tmp.replace(marker)
    return image_id


def _get(client, reference: str):
    """The engine's image under `reference` (a name, repo@digest or an id), or None."""
    import docker

    try:
        return client.images.get(reference)
    except docker.errors.ImageNotFound:
        return None


def _split_reference(image: str) -> tuple[str, str]:
    """("host:port/name", "tag" or "sha256:..."): a missing tag is "latest", as the engine reads it."""
    import docker

    repo, tag = docker.utils.parse_repository_tag(image)
    return repo, tag or "latest"


def _identity_matches(image, image_hash: str) -> bool:
    """The image is the registered one: its id, or a registry digest it was pushed or pulled with."""
    digests = [d.split("@", 1)[1] for d in image.attrs.get("RepoDigests") or [] if "@" in d]
    return image_hash == image.id or image_hash in digests


def _count_layer(layers: dict[str, tuple[int, int]], event: Mapping) -> None:
    """Fold one line of the engine's pull stream into {layer: (bytes done, bytes total)}."""
    layer, status = event.get("id"), str(event.get("status") or "")
    detail = event.get("progressDetail") or {}
    if not layer or layer.startswith("sha256:"):
        return
    done, total = layers.get(layer, (0, 0))
    if status == "Downloading" and detail.get("total"):
        layers[layer] = (int(detail.get("current") or 0), int(detail["total"]))
    elif status == "Extracting" and detail.get("total") and not total:
        # a small layer can arrive whole with no Downloading line: its extracted size is the one size given
        layers[layer] = (int(detail["total"]), int(detail["total"]))
    elif status in ("Download complete", "Pull complete", "Already exists"):
        layers[layer] = (total, total)
