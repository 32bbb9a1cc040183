"""Images: every container image is pinned (a tag that does not float, or a digest) and comes from an
allowed registry. Covers pod templates and the image overrides in Helm values (HelmChart, helm Release)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from edgefm_guardrails.config import ImagesConfig
from edgefm_guardrails.kube import helm_values, workload_containers
from edgefm_guardrails.model import UNKNOWN, Resource, Violation

DOCKER_HUB: Final = "docker.io"
DOCKER_HUB_ALIASES: Final = ("index.docker.io", "registry-1.docker.io")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")


@dataclass(frozen=True)
class ImageRef:
    """A parsed image reference; `repository` is normalised to `registry/path` (docker.io implied)."""

    raw: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def registry(self) -> str:
        return self.repository.split("/", 1)[0]


def _split_registry(name: str) -> tuple[str, str]:
    first, _, rest = name.partition("/")
    # The first component is a registry host only if it looks like one (Docker's own rule).
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, path = first.lower(), rest
    else:
        registry, path = DOCKER_HUB, name
    if registry in DOCKER_HUB_ALIASES:
        registry = DOCKER_HUB
    return registry, path


def _normalise_repository(name: str) -> str:
    registry, path = _split_registry(name)
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"  # official images: `nginx` is docker.io/library/nginx
    return f"{registry}/{path}"


def parse_image(ref: str) -> ImageRef | None:
    """Parses `[registry/]path[:tag][@digest]`; None if it is not an image reference at all."""
    ref = ref.strip()
    if not ref or any(ch.isspace() for ch in ref):
        return None
    name, _, digest = ref.partition("@")
    tag: str | None = None
    last_slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > last_slash:
        name, tag = name[:colon], name[colon + 1 :]
    if not name:
        return None
    return ImageRef(ref, _normalise_repository(name), tag if tag is not None else None, digest or None)


def registry_allowed(image: ImageRef, allowed: tuple[str, ...]) -> bool:
    for entry in allowed:
        entry = entry.strip().rstrip("/")
        if "/" not in entry:
            # A bare host ("nvcr.io") allows the whole registry.
            host = entry.lower()
            if host in DOCKER_HUB_ALIASES:
                host = DOCKER_HUB
            if image.registry == host:
                return True
            continue
        registry, path = _split_registry(entry)
        prefix = f"{registry}/{path}"
        # Match whole path components: docker.io/rancher must not admit docker.io/rancherx.
        if image.repository == prefix or image.repository.startswith(prefix + "/"):
            return True
    return False


def image_problems(ref: str, cfg: ImagesConfig, *, tag_required: bool = True) -> list[str]:
    """What is wrong with one image reference (empty: fine)."""
    image = parse_image(ref)
    if image is None:
        return [f"image {ref!r} is not a valid image reference"]
    problems: list[str] = []
    if image.digest is not None:
        if not _DIGEST.match(image.digest):
            problems.append(f"image {ref!r} has a malformed digest (want sha256:<64 hex>)")
    elif image.tag is None:
        if tag_required:
            problems.append(f"image {ref!r} has no tag or digest (it floats on latest); pin a version or digest")
    elif image.tag.lower() in {t.lower() for t in cfg.floating_tags}:
        problems.append(f"image {ref!r} uses the floating tag {image.tag!r}; pin a version or digest")
    elif not _TAG.match(image.tag):
        problems.append(f"image {ref!r} has a malformed tag")
    if not registry_allowed(image, cfg.allowed_registries):
        problems.append(
            f"image {ref!r} comes from {image.repository.rsplit('/', 1)[0]}, which is not an allowed "
            f"registry ({', '.join(cfg.allowed_registries)})"
        )
    return problems


def _scalar(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def helm_value_images(values: Any) -> Iterator[tuple[str, str, bool]]:
    """(path, image, tag_given) for the image overrides in a chart's values.

    Charts spell images in a few ways; edgefm's charts use these three:
      image: quay.io/minio/minio:RELEASE...                     (a full reference under an *image key)
      image: {repository: quay.io/minio/minio, tag: RELEASE...}  (MinIO, Prometheus; `registry:` optional)
      driver: {repository: nvcr.io/nvidia, image: driver, version: 570...}  (NVIDIA GPU operator)
    A mapping without a tag leaves the chart's own pinned default, so only its registry is checked.
    """

    def walk(node: Any, path: str) -> Iterator[tuple[str, str, bool]]:
        if isinstance(node, Mapping):
            repo = _scalar(node.get("repository"))
            image = _scalar(node.get("image"))
            tag = _scalar(node.get("tag")) or _scalar(node.get("version"))
            digest = _scalar(node.get("digest"))
            if repo is not None and "://" not in repo and ("/" in repo or node.get("registry")):
                name = repo
                registry = _scalar(node.get("registry"))
                if registry:
                    name = f"{registry.rstrip('/')}/{repo}"
                if image is not None and "/" not in image and ":" not in image:
                    name = f"{name.rstrip('/')}/{image}"  # GPU-operator style: repository + image name
                ref = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
                yield path or ".", ref, bool(tag or digest)
                return
            for key, child in node.items():
                key_s = str(key)
                child_path = f"{path}.{key_s}" if path else key_s
                if isinstance(child, str) and (key_s == "image" or key_s.endswith("Image")) and "/" in child:
                    yield child_path, child, True
                else:
                    yield from walk(child, child_path)
        elif isinstance(node, list):
            for i, child in enumerate(node):
                yield from walk(child, f"{path}[{i}]")

    yield from walk(values, "")


def check_images(r: Resource, cfg: ImagesConfig) -> list[Violation]:
    out: list[Violation] = []
    for _tmpl, c in workload_containers(r):
        image = c.spec.get("image")
        if image is UNKNOWN:
            continue  # computed from another resource; checked again at update time when known
        if not isinstance(image, str) or not image:
            out.append(Violation(f"{r.label}: {c.label} declares no image", r.urn))
            continue
        out += [Violation(f"{r.label}: {c.label}: {p}", r.urn) for p in image_problems(image, cfg)]
    for where, values in helm_values(r):
        for path, ref, tag_given in helm_value_images(values):
            problems = image_problems(ref, cfg, tag_required=tag_given)
            out += [Violation(f"{r.label}: {where} {path}: {p}", r.urn) for p in problems]
    return out
