"""Helpers for the container tests: throwaway images built from the base, specs for them."""

from __future__ import annotations

from runner.container_spec import ContainerSpec


def build_test_image(client, base: str, tag: str, files: dict[str, str]) -> str:
    """Build a throwaway image FROM base with `files` (name -> text) copied into /app; return its id."""
    import io
    import tarfile

    dockerfile = f"FROM {base}\nENV PYTHONDONTWRITEBYTECODE=1\nCOPY app /app\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in {"Dockerfile": dockerfile, **{f"app/{k}": v for k, v in files.items()}}.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    image, _ = client.images.build(fileobj=buf, custom_context=True, tag=tag, rm=True, forcerm=True, pull=False)
    return image.id


def spec_for(image: str, image_hash: str, tasks: dict, *, parameters=None, name: str = "test", **extra) -> ContainerSpec:
    """A ContainerSpec for a test image."""
    return ContainerSpec.from_record({"id": 99, "name": name, "image_hash": image_hash, "parameters_config": parameters,
                                      "container_config": {"container_type": "DockerImage", "image": image,
                                                           "tasks": tasks}, **extra})


def load_npy(path) -> tuple[tuple[int, ...], list[float]]:
    """Read a little-endian float32/float64 .npy file without numpy: (shape, flat values)."""
    import ast
    import struct

    data = open(path, "rb").read()
    assert data[:6] == b"\x93NUMPY", f"{path} is not a .npy file"
    if data[6] == 1:
        header_len, offset = struct.unpack("<H", data[8:10])[0], 10
    else:
        header_len, offset = struct.unpack("<I", data[8:12])[0], 12
    header = ast.literal_eval(data[offset:offset + header_len].decode("latin1"))
    fmt = {"<f4": "f", "<f8": "d"}[header["descr"]]
    body = data[offset + header_len:]
    count = len(body) // struct.calcsize(fmt)
    return tuple(header["shape"]), list(struct.unpack(f"<{count}{fmt}", body))
