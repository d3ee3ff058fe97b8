"""A container record (MedPerf's container_config, parameters_config, image hash, additional files), parsed and validated.

Pure: no Docker, no network. The Docker side is runner/clients/containers.py.
"""

from __future__ import annotations

import copy
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import yaml

import schemas
from runner.errors import ContainerSpecError

# The MedPerf keys MedPerf supplies to each task; `parameters_file` and
# `additional_files` are supplied to every task by the container runner itself.
SUPPLIED_KEYS: Mapping[str, frozenset[str]] = MappingProxyType({
    "prepare": frozenset({"data_path", "labels_path", "output_path", "output_labels_path", "metadata_path",
                          "report_file"}),
    "sanity_check": frozenset({"data_path", "labels_path", "metadata_path"}),
    "statistics": frozenset({"data_path", "labels_path", "output_path", "metadata_path"}),
    "infer": frozenset({"data_path", "output_path"}),
    "evaluate": frozenset({"predictions", "labels", "output_path", "local_outputs_path"}),
})
RUNNER_KEYS = frozenset({"parameters_file", "additional_files"})

_IMAGE_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_URL_SCHEMES = ("file://", "http://", "https://")
DOCKER_IMAGE, DOCKER_ARCHIVE = "DockerImage", "DockerArchive"
RUNNABLE_TYPES = (DOCKER_IMAGE, DOCKER_ARCHIVE)


@dataclass(frozen=True)
class Volume:
    """One mount a task declares: the MedPerf key, where it appears in the container, file or directory."""

    key: str
    mount_path: str
    type: str  # "directory" | "file"
    output: bool  # output volumes are read-write (created if missing); inputs are read-only


@dataclass(frozen=True)
class TaskConfig:
    """One task of a container_config, normalised: argv lists, string environment, volumes by key."""

    name: str
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    gpus: str | int | None = None
    shm_size: str | int | None = None
    volumes: tuple[Volume, ...] = ()

    def volume(self, key: str) -> Volume | None:
        """Return the volume this task declares for MedPerf key `key`, if any."""
        return next((v for v in self.volumes if v.key == key), None)


@dataclass(frozen=True)
class ContainerSpec:
    """A validated container record, as the server stores it under /mlcubes/{id}/."""

    id: int | None
    name: str
    image: str
    config: Mapping  # validated container_config (container_type DockerImage or DockerArchive)
    parameters: Mapping | None  # parameters_config, written to parameters.yaml before each task
    image_hash: str  # DockerImage: the registry's manifest digest (or a local image id); DockerArchive: the
    #                  archive file's SHA-256, "sha256:<hex>" (a bare hex digest, as MedPerf's CLI writes, is accepted)
    additional_files_url: str = ""
    additional_files_hash: str = ""

    @property
    def container_type(self) -> str:
        return str(self.config.get("container_type") or DOCKER_IMAGE)

    @property
    def is_archive(self) -> bool:
        """An image tarball (`docker save`) fetched from `image` (a URL), SHA-256 checked, then loaded."""
        return self.container_type == DOCKER_ARCHIVE

    def __hash__(self) -> int:  # config and parameters are mappings: hash the identity fields only
        return hash((self.id, self.name, self.image, self.image_hash, self.additional_files_hash))

    @classmethod
    def from_record(cls, record: Mapping, *, schema_checked: bool = False) -> ContainerSpec:
        """Parse a server /mlcubes/{id}/ record (or a model record's nested container); ContainerSpecError if malformed.

        `schema_checked`: this program parsed the very record before (a Slurm job's task.json, written from a spec):
        the JSON Schema pass is skipped (importing jsonschema costs each job ~0.07 s); MedPerf's rules still run."""
        if not isinstance(record, Mapping):
            raise ContainerSpecError(f"a container record must be a mapping, got {type(record).__name__}")
        if isinstance(record.get("container"), Mapping) and "container_config" not in record:
            record = record["container"]  # a model record wrapping its container
        name = str(record.get("name") or f"container {record.get('id', '?')}")
        where = f"container {name}"
        config = record.get("container_config")
        if isinstance(config, str):
            try:
                config = yaml.safe_load(config)
            except yaml.YAMLError as e:
                raise ContainerSpecError(f"container_config is not valid YAML/JSON: {e}", where=where) from e
        if not isinstance(config, Mapping):
            raise ContainerSpecError("container_config is missing or not a mapping", where=where,
                                     hint="the record must carry MedPerf's container_config (image, tasks)")
        validate_config(config, where=where, schema=not schema_checked)
        config = copy.deepcopy(dict(config))  # the spec must not change if the caller's record does
        parameters = record.get("parameters_config")
        if parameters is not None and not isinstance(parameters, Mapping):
            raise ContainerSpecError(f"parameters_config must be a mapping or null, got {type(parameters).__name__}",
                                     where=where)
        image_hash = str(record.get("image_hash") or "")
        archive = config.get("container_type") == DOCKER_ARCHIVE
        if archive and _SHA256_HEX.match(image_hash.lower()):
            image_hash = "sha256:" + image_hash.lower()  # MedPerf's CLI records a file's hash as bare hex
        if not _IMAGE_HASH.match(image_hash):
            what = "the archive's SHA-256" if archive else "the registry digest or image id"
            raise ContainerSpecError(f"image_hash {image_hash!r} is not 'sha256:' followed by 64 hex digits",
                                     where=where, hint=f"the record must pin the image by {what}")
        image = str(config["image"])
        if image.startswith("direct:"):
            image = image[len("direct:"):]
        if archive and not image.startswith(_URL_SCHEMES):
            raise ContainerSpecError(f"a DockerArchive's image {image!r} is not a file://, http:// or https:// URL",
                                     where=where, hint="other resource kinds (e.g. synapse:) are not supported")
        url = str(record.get("additional_files_tarball_url") or "").strip()
        digest = str(record.get("additional_files_tarball_hash") or "").strip().lower()
        if url.startswith("direct:"):
            url = url[len("direct:"):]
        if url and not url.startswith(_URL_SCHEMES):
            raise ContainerSpecError(f"additional_files_tarball_url {url!r} is not a file://, http:// or https:// URL",
                                     where=where, hint="other resource kinds (e.g. synapse:) are not supported")
        if url and not _SHA256_HEX.match(digest):
            raise ContainerSpecError(f"additional_files_tarball_hash {digest!r} is not a SHA-256 hex digest",
                                     where=where, hint="additional files are only used when their hash is pinned")
        record_id = record.get("id")
        return cls(id=int(record_id) if record_id is not None else None, name=name, image=image,
                   config=config, parameters=copy.deepcopy(dict(parameters)) if parameters is not None else None,
                   image_hash=image_hash,
                   additional_files_url=url, additional_files_hash=digest if url else "")

    def tasks(self) -> frozenset[str]:
        """Return the task names the container declares."""
        return frozenset(self.config["tasks"])

    def declares(self, task: str, key: str) -> bool:
        """Tell whether `task` mounts MedPerf key `key` (e.g. declares("prepare", "report_file"))."""
        return task in self.tasks() and self.task(task).volume(key) is not None

    def task(self, task: str) -> TaskConfig:
        """Return the normalised config of `task`; ContainerSpecError if the container has no such task."""
        if task not in self.tasks():
            raise ContainerSpecError(f"has no task {task!r} (it declares: {', '.join(sorted(self.tasks()))})",
                                     where=f"container {self.name}")
        raw = self.config["tasks"][task] or {}
        run_args = raw.get("run_args") or {}
        volumes = [Volume(k, v["mount_path"], v["type"], False) for k, v in (raw.get("input_volumes") or {}).items()]
        volumes += [Volume(k, v["mount_path"], v["type"], True) for k, v in (raw.get("output_volumes") or {}).items()]
        env = {str(k): _env_value(v) for k, v in (run_args.get("environment") or {}).items()}
        return TaskConfig(name=task, command=_argv(run_args.get("command")),
                          entrypoint=_argv(run_args.get("entrypoint")), environment=MappingProxyType(env),
                          gpus=run_args.get("gpus"), shm_size=run_args.get("shm_size"), volumes=tuple(volumes))


def validate_config(config: Mapping, *, where: str = "container_config", schema: bool = True) -> None:
    """Check a container_config against the schema (unless `schema` is false: checked before) and MedPerf's rules;
    ContainerSpecError listing every problem."""
    if schema:
        import jsonschema  # heavy (60 ms): imported when a container record is checked, never on the no-op plan path

        validator = jsonschema.Draft202012Validator(schemas.load("container_config"))
        problems = [f"{e.json_path}: {e.message}"
                    for e in sorted(validator.iter_errors(config), key=lambda e: e.json_path)]
        if problems:
            raise ContainerSpecError("invalid container_config: " + "; ".join(problems), where=where)
    kind = config.get("container_type", DOCKER_IMAGE)
    if kind not in RUNNABLE_TYPES:
        raise ContainerSpecError(f"container_type {kind} is unsupported", where=where,
                                 hint="medperf-apply runs DockerImage and DockerArchive containers")
    for task, raw in config["tasks"].items():
        raw = raw or {}
        inputs, outputs = raw.get("input_volumes") or {}, raw.get("output_volumes") or {}
        both = sorted(set(inputs) & set(outputs))
        if both:
            raise ContainerSpecError(f"task {task}: {', '.join(both)} declared as both input and output volume",
                                     where=where)
        seen: dict[str, str] = {}
        for key, vol in {**inputs, **outputs}.items():
            path = "/" + vol["mount_path"].strip("/")
            if path == "/":
                raise ContainerSpecError(f"task {task}: volume {key} cannot be mounted at /", where=where)
            if path in seen:
                raise ContainerSpecError(f"task {task}: volumes {seen[path]} and {key} share mount path {path}",
                                         where=where)
            seen[path] = key


def _argv(value) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return tuple(shlex.split(value))
    return tuple(value)


def _env_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def normalize_gpus(value, *, where: str = "gpus") -> str | int | tuple[str, ...] | None:
    """MedPerf's --gpus / run_args.gpus: None (no GPU: unset, "", 0), "all", a count, or device ids (device=0,1)."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value >= 0:
            return value or None
    elif isinstance(value, str):
        text = str(value).strip()
        if text in ("", "0"):
            return None
        if text == "all":
            return "all"
        if text.isdigit():
            return int(text)
        if text.startswith("device="):
            ids = tuple(d.strip() for d in text[len("device="):].split(","))
            if ids and all(ids):
                return ids
    raise ContainerSpecError(f"gpus {value!r} is not all, a count, or device=<ids>", where=where,
                             hint="as MedPerf's --gpus: all, 2, device=0,1 (0 or empty: none)")


_SHM_SIZE = re.compile(r"^[0-9]+(\.[0-9]+)?([bkmgBKMG][bB]?)?$")


def check_shm_size(value, *, where: str = "shm_size") -> str | int | None:
    """MedPerf's --shm-size / run_args.shm_size: bytes, or a number with b, k, m or g (e.g. 2g)."""
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and _SHM_SIZE.match(value.strip()):
        return value.strip()
    raise ContainerSpecError(f"shm_size {value!r} is not a size", where=where, hint="e.g. 2g, 512m or 1073741824")
