"""Build the chest X-ray example: train the two models' weights (cached), pack them as additional-files
tarballs, build the four images, and write build/components.json for `medperf-server seed --components`.

With a registry (--registry HOST:PORT, or MEDPERF_REGISTRY), the images are tagged and pushed there and each record
names its image HOST:PORT/medperf-apply/chestxray-*:TAG with the registry's manifest digest as image_hash, as
MedPerf's records do; without one, the local image and its id (a laptop without a registry still works).
Also written: the linear model `docker save`d as an image archive (a DockerArchive record, "archive_model") and a
small demo dataset in MedPerf's layout (paths.yaml; its prepared data's hash as generated_uid), "demo_dataset".

Called by build.sh once the base image exists: python build.py --base-image IMAGE [--registry HOST:PORT]
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
ARCHIVE_NAME = "medperf-apply/chestxray-linear-archive:latest"  # its own name: loading it moves no other tag
DEMO_CASES, DEMO_SEED = 10, 3


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


def push(client, image_id: str, tag: str, registry: str) -> tuple[str, str]:
    """Tag the image REGISTRY/<repo>:<content tag> and push it; return (reference, the registry's digest).

    The tag names the content (the image id's first 12 hex digits), so a rebuild never moves a registered tag."""
    repo = f"{registry}/{tag.rsplit(':', 1)[0]}"
    version = "id-" + image_id.split(":", 1)[1][:12]
    client.images.get(image_id).tag(repo, version)
    digest = None
    for line in client.images.push(repo, tag=version, stream=True, decode=True):
        if "error" in line:
            raise SystemExit(f"build: pushing {repo}:{version} failed: {line['error']}")
        digest = (line.get("aux") or {}).get("Digest") or digest
    if not digest:
        raise SystemExit(f"build: pushing {repo}:{version} reported no digest")
    return f"{repo}:{version}", digest


def save_archive(client, image_id: str) -> tuple[Path, str]:
    """`docker save` the linear model under its own name into build/ (again only when the image changed)."""
    tarball, stamp = BUILD / "linear_image.tar", BUILD / "linear_image.tar.id"
    if not (tarball.is_file() and stamp.is_file() and stamp.read_text().strip() == image_id):
        client.images.get(image_id).tag(*ARCHIVE_NAME.rsplit(":", 1))
        tmp = tarball.with_suffix(".tar.tmp")
        with open(tmp, "wb") as f:
            for chunk in client.images.get(ARCHIVE_NAME).save(named=ARCHIVE_NAME):
                f.write(chunk)
        tmp.replace(tarball)
        stamp.write_text(image_id + "\n")
    digest = hashlib.sha256()
    with open(tarball, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return tarball, digest.hexdigest()


def demo_dataset(prep_record: dict) -> dict:
    """MedPerf's demo dataset: a tarball of raw toy data with paths.yaml, and its prepared data's hash."""
    sys.path.insert(0, str(HERE.parents[1]))
    from runner.clients.containers import DockerRunner
    from runner.container_spec import ContainerSpec
    from runner.hashing import folders_hash

    folder, tarball = BUILD / "demo", BUILD / "demo_data.tar.gz"
    key = hashlib.sha256(f"{prep_record['image_hash']} {DEMO_CASES} {DEMO_SEED}".encode()
                         + (HERE / "make_data.py").read_bytes()).hexdigest()
    known = folder / "inputs.json"
    if tarball.is_file() and known.is_file() and json.loads(known.read_text()).get("key") == key:
        # the URL is where the tarball is now (the build folder may have been copied or moved)
        return {**json.loads(known.read_text())["demo_dataset"], "tarball_url": tarball.resolve().as_uri()}
    shutil.rmtree(folder, ignore_errors=True)
    raw = folder / "raw"
    subprocess.run([sys.executable, str(HERE / "make_data.py"), "--out", str(raw), "--cases", str(DEMO_CASES),
                    "--seed", str(DEMO_SEED)], check=True)
    (raw / "paths.yaml").write_text("data_path: images\nlabels_path: labels\n")
    prepared = folder / "prepared"
    DockerRunner(folder / "cache").run_task(
        ContainerSpec.from_record(prep_record), "prepare",
        {"data_path": raw / "images", "labels_path": raw / "labels", "output_path": prepared / "data",
         "output_labels_path": prepared / "labels"}, log_path=folder / "prepare.log")
    sha = pack(raw, tarball)
    entry = {"tarball_url": tarball.resolve().as_uri(), "tarball_hash": sha,
             "generated_uid": folders_hash([prepared / "data", prepared / "labels"])}
    known.write_text(json.dumps({"key": key, "demo_dataset": entry}) + "\n")
    return entry


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-image", required=True)
    parser.add_argument("--registry", default=os.environ.get("MEDPERF_REGISTRY") or None, metavar="HOST:PORT",
                        help="push the images there and record their digests (default $MEDPERF_REGISTRY)")
    args = parser.parse_args(argv)
    client = docker.from_env(timeout=600)
    base_id = client.images.get(args.base_image).id
    BUILD.mkdir(exist_ok=True)
    train(client, args.base_image, base_id)
    tarballs = {m: BUILD / f"{m}_weights.tar.gz" for m in WEIGHTS}
    hashes = {m: pack(BUILD / "weights" / m, tarballs[m]) for m in WEIGHTS}
    components = {}
    image_ids = {}
    for key, (folder, name, tag) in COMPONENTS.items():
        image_id = image_ids[key] = build_image(client, folder, tag, args.base_image)
        params = yaml.safe_load((HERE / folder / "parameters.yaml").read_text()) if (
            HERE / folder / "parameters.yaml").is_file() else None
        config = yaml.safe_load((HERE / folder / "container_config.yaml").read_text())
        image_hash = image_id
        if args.registry:
            config["image"], image_hash = push(client, image_id, tag, args.registry)
            say(f"pushed {config['image']} {image_hash}")
        components[key] = {
            "name": name,
            "container_config": config,
            "parameters_config": params,
            "image_hash": image_hash,
            "additional_files_tarball_url": tarballs[folder].resolve().as_uri() if folder in WEIGHTS else "",
            "additional_files_tarball_hash": hashes[folder] if folder in WEIGHTS else "",
        }
    archive, archive_hash = save_archive(client, image_ids["second_model"])
    linear = components["second_model"]
    components["archive_model"] = {
        **linear, "name": "chestxray_linear_archive", "image_hash": archive_hash,  # bare hex, as MedPerf's CLI
        "container_config": {**linear["container_config"], "container_type": "DockerArchive",
                             "image": archive.resolve().as_uri()}}
    components["demo_dataset"] = demo_dataset(components["prep"])
    out = BUILD / "components.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(components, indent=2) + "\n")
    tmp.replace(out)
    say(f"wrote {out}")
    for key in COMPONENTS:
        print(f"{components[key]['container_config']['image']} {components[key]['image_hash']}")
    print(f"{components['archive_model']['container_config']['image']} sha256:{archive_hash}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
