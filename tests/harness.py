"""Runs edgefm programs under Pulumi's runtime mocks and records every registered resource."""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dill
import pulumi
import yaml
from nacl.public import PrivateKey
from pulumi.runtime import mocks as pmocks
from pulumi.runtime.sync_await import _sync_await

from edgefm.model.placement import ResolvedSite, load_policy, resolve
from edgefm.model.sealing import SiteKeyPair, seal
from edgefm.model.stacks import ACCESS_KEYS, RawConfig, RawValue, SiteStack, parse_access, parse_hub, parse_site

ROOT = Path(__file__).resolve().parent.parent
STACKS = ROOT / "stacks"
PLACEMENT = ROOT / "policies" / "placement.yaml"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
FAKE_SSH_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nfake-test-key\n-----END OPENSSH PRIVATE KEY-----"
FAKE_KUBECONFIG = "apiVersion: v1\nkind: Config\nclusters: []\n"


def fixed_site_keys(site: str) -> SiteKeyPair:
    """A fixed key pair per site name, standing in for the one `edgefm site keygen` writes."""
    private = PrivateKey(hashlib.sha256(f"edgefm-test-key:{site}".encode()).digest())
    return SiteKeyPair(base64.b64encode(bytes(private)).decode(), base64.b64encode(bytes(private.public_key)).decode())


TEST_SITES = ["bridge-north", "bridge-south", "viaduct-cpu", "harbor-ocp", "example", "new-site"]
# What the hub and an access shard export, merged: a mocked StackReference answers with all of it.
HUB_OUTPUTS: dict[str, Any] = {
    "registryEndpoint": "https://registry.hub.example.test",
    "registryBucket": "edgefm-models",
    "registryRegion": "eu-central-1",
    "registryKeyArn": "arn:aws:kms:eu-central-1:000000000000:key/test",
    "telemetryHost": "telemetry.hub.example.test",
    "sites": {
        s: {
            "sealed": seal(
                fixed_site_keys(s).public_key,
                {"site": s, "accessKeyId": f"site-{s}", "secretAccessKey": f"registry-secret-for-{s}"},
            ),
            "remoteWriteUrl": f"https://telemetry.hub.example.test/sites/{s}/api/v1/write",
        }
        for s in TEST_SITES
    },
}


@dataclass
class Recorded:
    type: str
    name: str
    inputs: dict[str, Any]
    custom: bool
    parent: str
    protect: bool
    retain_on_delete: bool
    secret_outputs: list[str]
    urn: str = ""
    # Input property → URNs it depends on (how policies tie a bucket's companions to their bucket).
    property_dependencies: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass
class Run:
    resources: list[Recorded] = field(default_factory=list)
    # Secret values the dynamic providers generated (random secrets, CA keys), to look for leaks.
    generated_secrets: list[str] = field(default_factory=list)
    # Stack output name → (value, is it secret).
    exports: dict[str, tuple[Any, bool]] = field(default_factory=dict)

    def of_type(self, typ: str) -> list[Recorded]:
        return [r for r in self.resources if r.type == typ]

    def one(self, typ: str, name_suffix: str = "") -> Recorded:
        found = [r for r in self.of_type(typ) if r.name.endswith(name_suffix)]
        assert len(found) == 1, f"expected one {typ} named *{name_suffix}, found {[r.name for r in found]}"
        return found[0]

    def counts(self) -> Counter[str]:
        return Counter(r.type for r in self.resources)

    def kinds(self, kind: str) -> list[Recorded]:
        """Kubernetes objects of one kind, typed or custom (`kubernetes:<group>/<ver>:<Kind>`)."""
        return [r for r in self.resources if r.type.startswith("kubernetes:") and r.type.rsplit(":", 1)[-1] == kind]

    def k8s_objects(self) -> list[Recorded]:
        return [
            r for r in self.resources if r.type.startswith("kubernetes:") and r.type != "pulumi:providers:kubernetes"
        ]


def unwrap(value: Any) -> Any:
    """Strips the mock monitor's secret envelopes, leaving plain values."""
    if isinstance(value, dict):
        if value.get("4dabf18193072939515e22adb298388d") == SECRET_SIG:
            return unwrap(value.get("value"))
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get("4dabf18193072939515e22adb298388d") == SECRET_SIG


class _Mocks(pulumi.runtime.Mocks):
    def __init__(self, run: Run, hub_outputs: Mapping[str, Any]) -> None:
        self.run = run
        self.hub_outputs = hub_outputs

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        outputs = dict(args.inputs)
        if args.typ == "pulumi:pulumi:StackReference":
            outputs = {
                "name": args.name,
                "outputs": dict(self.hub_outputs),
                "secretOutputNames": [],
            }
        elif args.typ.startswith("pulumi-python:dynamic"):
            # Run the real dynamic provider, as the engine would: tests see real random values and CAs.
            provider = dill.loads(base64.b64decode(unwrap(args.inputs["__provider"])))
            props = {k: v for k, v in unwrap(args.inputs).items() if k != "__provider"}
            created = provider.create(props)
            outs = dict(created.outs or {})
            self.run.generated_secrets += [str(outs[k]) for k in ("value", "private_key") if outs.get(k)]
            return created.id, outs
        elif args.typ == "command:local:Command":
            outputs["stdout"] = "0f" * 16
        elif args.typ == "command:remote:Command":
            outputs["stdout"] = (
                "apiVersion: v1\nclusters:\n- cluster:\n    server: https://127.0.0.1:6443\n"
                if "kubeconfig" in args.name
                else "K10token::server:abc"
            )
        elif args.typ == "aws:iam/accessKey:AccessKey":
            outputs["secret"] = f"aws-secret-{args.name}"
        elif args.typ in ("aws:s3/bucket:Bucket", "aws:kms/key:Key"):
            outputs["arn"] = f"arn:aws:{args.typ.split(':')[1].split('/')[0]}:::{args.inputs.get('bucket', args.name)}"
            outputs.setdefault("bucket", args.inputs.get("bucket", args.name))
            outputs["keyId"] = f"key-{args.name}"
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


class _Monitor(pmocks.MockMonitor):
    def __init__(self, mocks: _Mocks) -> None:
        super().__init__(mocks)
        self._run = mocks.run

    def RegisterResource(self, request: Any) -> Any:
        from google.protobuf import json_format

        inputs = json_format.MessageToDict(request.object)
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        self._run.resources.append(
            Recorded(
                type=request.type,
                name=request.name,
                inputs=inputs,
                custom=request.custom,
                parent=request.parent,
                protect=request.protect,
                retain_on_delete=request.retainOnDelete,
                secret_outputs=list(request.additionalSecretOutputs),
                urn=response.urn,
                property_dependencies={k: tuple(v.urns) for k, v in request.propertyDependencies.items()},
            )
        )
        return response


def run_program(program: Callable[[], Any], stack: str, hub_outputs: Mapping[str, Any] = HUB_OUTPUTS) -> Run:
    """Runs `program` under mocks and waits until every registration and output has settled."""
    run = Run()
    mocks = _Mocks(run, hub_outputs)
    # A fresh root Stack per run: set_mocks keeps the previous one (and its stack name) otherwise.
    pulumi.runtime.settings.set_root_resource(None)  # type: ignore[arg-type]
    pulumi.runtime.set_mocks(mocks, project="edgefm", stack=stack, preview=False, monitor=_Monitor(mocks))
    pulumi.runtime.settings.SETTINGS.rpc_manager.clear()

    def body() -> None:
        program()

    try:
        _sync_await(pulumi.runtime.stack.run_pulumi_func(body))
    except BaseException:
        _drain()
        raise
    root = pulumi.runtime.settings.get_root_resource()
    for name, value in getattr(root, "outputs", {}).items():
        output = pulumi.Output.from_input(value)
        run.exports[name] = (_sync_await(output.future()), _sync_await(output.is_secret()))
    return run


def _drain() -> None:
    """After a program failed: let its leftover tasks finish, so their errors do not surface in the next run."""
    loop = asyncio.get_event_loop()
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    pulumi.runtime.settings.SETTINGS.rpc_manager.clear()
    pulumi.runtime.settings.SETTINGS.outputs.clear()


def raw_from_file(path: Path, overrides: Mapping[str, Any] | None = None) -> RawConfig:
    """A stack file's config as the engine would hand it over, with test stand-ins for encrypted values."""
    doc = yaml.safe_load(path.read_text())
    raw: dict[str, RawValue] = {}
    site = (doc.get("config") or {}).get("edgefm:site", {}).get("name", "")
    for key, value in (doc.get("config") or {}).items():
        if key in ("edgefm:siteKey", "edgefm:sitePublicKey"):
            # The test key pair of this site name, so the mocked shard's sealed credential opens.
            pair = fixed_site_keys(site)
            raw[key] = (
                RawValue(pair.private_key, secret=True)
                if key == "edgefm:siteKey"
                else RawValue(pair.public_key, secret=False)
            )
        elif isinstance(value, dict) and set(value) == {"secure"}:
            fake = (
                FAKE_KUBECONFIG
                if key.endswith("kubeconfig")
                else FAKE_SSH_KEY
                if "ssh" in key.lower()
                else f"test-{key}"
            )
            raw[key] = RawValue(fake, secret=True)
        else:
            raw[key] = RawValue(copy.deepcopy(value), secret=False)
    for key, value in (overrides or {}).items():
        raw[key] = value if isinstance(value, RawValue) else RawValue(value, secret=False)
    return raw


def site_from_file(path: Path, env: Mapping[str, str] | None = None) -> tuple[SiteStack, ResolvedSite]:
    stack = path.name.removeprefix("Pulumi.").removesuffix(".yaml")
    parsed = parse_site(stack, raw_from_file(path), env or {})
    return parsed, resolve(stack, parsed.site, load_policy(PLACEMENT))


def run_site_file(path: Path, render_dir: str | None = None) -> Run:
    from edgefm.program import build_site

    env = {"EDGEFM_RENDER_ROOT": render_dir} if render_dir else {}
    parsed, resolved = site_from_file(path, env)

    def program() -> None:
        build_site(
            parsed,
            resolved,
            pulumi.StackReference("organization/edgefm/hub"),
            pulumi.StackReference("organization/edgefm/hub-access-000"),
        )

    return run_program(program, parsed.stack)


def run_hub_file(path: Path, overrides: Mapping[str, Any] | None = None) -> Run:
    from edgefm.program import build_hub

    parsed = parse_hub("hub", raw_from_file(path, overrides), {})
    policy = load_policy(PLACEMENT)
    return run_program(lambda: build_hub(parsed, policy), "hub")


def run_access(
    hub_file: Path, sites: Mapping[str, str], overrides: Mapping[str, Any] | None = None, stack: str = "hub-access-000"
) -> Run:
    """An access shard for `sites` (name → public key), with the hub's spec and secrets from `hub_file`."""
    from edgefm.model.config import HubSpec
    from edgefm.program import build_access

    raw = raw_from_file(hub_file, overrides)
    parsed = parse_access(stack, {k: v for k, v in raw.items() if k.split(":")[1] in ACCESS_KEYS}, {})
    hub = HubSpec.model_validate(raw["edgefm:hub"].value)
    return run_program(lambda: build_access(parsed, hub, dict(sites)), stack)


def iter_containers(obj: Recorded) -> Iterator[dict[str, Any]]:
    """Every container spec in a Deployment, Job or CronJob's pod template."""
    spec = obj.inputs.get("spec", {})
    if "jobTemplate" in spec:
        spec = spec["jobTemplate"]["spec"]
    pod = spec.get("template", {}).get("spec", {})
    yield from pod.get("initContainers", [])
    yield from pod.get("containers", [])
