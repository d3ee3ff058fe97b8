"""Build the chest X-ray example: train the two models' weights (cached), pack them as additional-files
tarballs, build the four images, and write build/components.json for `medperf-server seed --components`.

Called by build.sh once the base image exists: python build.py --base-image IMAGE
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import docker
import yaml
from docker.types import Mount

HERE = Path(__file__).resolve().parent
BUILD = HERE / "build"
TRAIN_CASES = 420
TRAIN_SEED = 1  # the toy data used for tests and the demo is generated with other seeds
# key in components.json -> (component folder, server name, image tag)
COMPONENTS = {
    "prep": ("prep", "chestxray_prep", "medperf-apply/chestxray-prep:latest"),
    "reference_model": ("cnn", "chestxray_cnn", "medperf-apply/chestxray-cnn:latest"),
    "metrics": ("metrics", "chestxray_metrics", "medperf-apply/chestxray-metrics:latest"),
    "second_model": ("linear", "chestxray_linear", "medperf-apply/chestxray-linear:latest"),
}
WEIGHTS = ("cnn", "linear")
TRAINING_INPUTS = ("make_data.py", "train.py", "prep/project/prep.py", "prep/parameters.yaml",
                   "cnn/project/model.py", "linear/project/model.py")


def say(message: str) -> None:
    print(f"build: {message}", flush=True)


def training_key(base_id: str) -> str:
    digest = hashlib.sha256(f"{base_id} {TRAIN_CASES} {TRAIN_SEED}\n".encode())
    for rel in TRAINING_INPUTS:
        digest.update(rel.encode() + b"\0" + (HERE / rel).read_bytes() + b"\0")
    return digest.hexdigest()


def train(client, base: str, base_id: str) -> None:
    """Train the weights into build/weights/, unless they exist for the same inputs."""
    weights = BUILD / "weights"
    key = training_key(base_id)
    key_file = weights / "inputs.sha256"
    if key_file.is_file() and key_file.read_text().strip() == key and all((weights / m).is_dir() for m in WEIGHTS):
        say("weights are up to date (training skipped)")
        return
    shutil.rmtree(weights, ignore_errors=True)
    weights.mkdir(parents=True)
    data = BUILD / "train_data"
    subprocess.run([sys.executable, str(HERE / "make_data.py"), "--out", str(data), "--cases", str(TRAIN_CASES),
                    "--seed", str(TRAIN_SEED)], check=True)
    say(f"training both models in {base}")
    started = time.monotonic()
    container = client.containers.create(
        base, ["python3", "/src/train.py", "--src", "/src", "--data", "/data", "--out", "/out"],
        user=f"{os.getuid()}:{os.getgid()}", network_mode="none", working_dir="/tmp",
        environment={"PYTHONDONTWRITEBYTECODE": "1"},
        mounts=[Mount("/src", str(HERE), type="bind", read_only=True),
                Mount("/data", str(data), type="bind", read_only=True),
                Mount("/out", str(weights), type="bind")])
    try:
        container.start()
        for chunk in container.logs(stream=True, follow=True):
            sys.stdout.write("  " + chunk.decode(errors="replace"))
        code = container.wait()["StatusCode"]
    finally:
        container.remove(force=True)
    if code != 0:
        raise SystemExit(f"build: training failed (exit code {code})")
    key_file.write_text(key + "\n")
    say(f"trained in {time.monotonic() - started:.1f} s")


def pack(folder: Path, dest: Path) -> str:
    """Write folder's files as a reproducible .tar.gz (same layout as `tar -czf dest -C folder .`); return its SHA-256."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w",
                                                                                         format=tarfile.PAX_FORMAT) as tar:
        def add(path: Path, arcname: str) -> None:
            info = tar.gettarinfo(str(path), arcname)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            info.mode = 0o755 if info.isdir() else 0o644
            if info.isdir():
                tar.addfile(info)
            else:
                with open(path, "rb") as f:
                    tar.addfile(info, f)

        add(folder, ".")
        for path in sorted(folder.rglob("*")):
            add(path, "./" + path.relative_to(folder).as_posix())
    data = buf.getvalue()
    if not dest.is_file() or dest.read_bytes() != data:
        dest.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def build_image(client, folder: str, tag: str, base: str) -> str:
    started = time.monotonic()
    try:
        image, _ = client.images.build(path=str(HERE), dockerfile=f"{folder}/Dockerfile", tag=tag,
                                       buildargs={"BASE_IMAGE": base}, rm=True, forcerm=True, pull=False)
    except docker.errors.BuildError as e:
        for entry in e.build_log:
            sys.stderr.write(entry.get("stream", "") or entry.get("error", ""))
        raise SystemExit(f"build: building {tag} failed: {e.msg}") from e
    say(f"{tag} {image.id} ({time.monotonic() - started:.1f} s)")
    return image.id


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-image", required=True)
    args = parser.parse_args(argv)
    client = docker.from_env(timeout=600)
    base_id = client.images.get(args.base_image).id
    BUILD.mkdir(exist_ok=True)
    train(client, args.base_image, base_id)
    tarballs = {m: BUILD / f"{m}_weights.tar.gz" for m in WEIGHTS}
    hashes = {m: pack(BUILD / "weights" / m, tarballs[m]) for m in WEIGHTS}
    components = {}
    for key, (folder, name, tag) in COMPONENTS.items():
        image_id = build_image(client, folder, tag, args.base_image)
        params = yaml.safe_load((HERE / folder / "parameters.yaml").read_text()) if (
            HERE / folder / "parameters.yaml").is_file() else None
        components[key] = {
            "name": name,
            "container_config": yaml.safe_load((HERE / folder / "container_config.yaml").read_text()),
            "parameters_config": params,
            "image_hash": image_id,
            "additional_files_tarball_url": tarballs[folder].resolve().as_uri() if folder in WEIGHTS else "",
            "additional_files_tarball_hash": hashes[folder] if folder in WEIGHTS else "",
        }
    out = BUILD / "components.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(components, indent=2) + "\n")
    tmp.replace(out)
    say(f"wrote {out}")
    for key, (_, _, tag) in COMPONENTS.items():
        print(f"{tag} {components[key]['image_hash']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
