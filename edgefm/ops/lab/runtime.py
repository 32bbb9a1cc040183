"""The fleet lab: one real Kubernetes control plane per stack of the checkout, on 127.0.0.1.

Each cluster is etcd, kube-apiserver, kube-controller-manager and kube-scheduler, with kwok in place of the
kubelet (fake nodes mirroring the site's `nodes`; pods become Running and Ready, Jobs' pods complete; no
container runs). TLS everywhere with one lab CA, RBAC on, every component under its own client certificate.

State lives under the lab directory (default `<checkout>/.state/lab`, git-ignored):

    ca.crt ca.key sa.key sa.pub      the lab CA and the service-account signing key (shared)
    <stack>/kubeconfig               admin credentials for that cluster (self-contained)
    <stack>/state.json               ports and the processes started (pid and start time)
    <stack>/etcd/ pki/ logs/         data, certificates, one log per process

`up` starts what is not running and leaves healthy clusters alone; `down` stops every process it started, by
pid, after checking the pid still belongs to that process (its start time), and keeps the data so the next
`up` finds the clusters as they were; `down(purge=True)` also removes the lab directory.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from edgefm.model.placement import PLACEMENT_FILE, load_policy
from edgefm.model.problems import ConfigError
from edgefm.model.stacks import (
    HUB_STACK,
    STACKS_DIR,
    check_fleet,
    is_access_stack,
    lab_kubeconfig_path,
    stack_files,
)
from edgefm.ops.lab import pki
from edgefm.ops.lab.kubeapi import Credentials, KubeApi, KubeApiError
from edgefm.ops.lab.nodes import CONTROLLER_STAGES, GPU_RESOURCE, ClusterPlan, hub_plan, site_plan

CACHE_ENV: Final = "EDGEFM_LAB_CACHE"
MANIFEST: Final = "lab.json"
SCHEMA: Final = 1
SERVICE_CIDR: Final = "10.96.0.0/16"
POD_CIDR: Final = "10.244.0.0/16"
KUBERNETES_VERSION: Final = "v1.37.2"
PROCESS_ORDER: Final = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
START_TIMEOUT: Final = 90.0
STOP_TIMEOUT: Final = 10.0
# Identities the control plane's components authenticate as (client certificate CN and O): the bootstrap
# RBAC policy grants the controller-manager and scheduler what they need under these names.
IDENTITIES: Final[Mapping[str, tuple[str, str | None]]] = {
    "admin": ("edgefm-lab-admin", "system:masters"),
    "kube-controller-manager": ("system:kube-controller-manager", None),
    "kube-scheduler": ("system:kube-scheduler", None),
    # kwok writes node and pod status for every fake node, as the kubelets and their controllers would.
    "kwok": ("kwok-controller", "system:masters"),
}

Progress = Callable[[str, str], None]


class LabError(RuntimeError):
    """The lab cannot do what was asked; the message says what and what to do."""


def default_lab_dir(root: Path) -> Path:
    return root / ".state" / "lab"


def cache_dir(env: Mapping[str, str] = os.environ) -> Path:
    if env.get(CACHE_ENV):
        return Path(env[CACHE_ENV]).expanduser()
    return Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgefm" / "lab"


@dataclass(frozen=True)
class LabTools:
    """What `make lab-tools` provided: binaries by name, kwok stage files and CRD files."""

    binaries: dict[str, Path]
    stages: list[Path]
    crds: list[Path]
    versions: dict[str, str]


def load_tools(env: Mapping[str, str] = os.environ) -> LabTools:
    path = cache_dir(env) / MANIFEST
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        raise LabError(f"the lab's binaries are not built ({path} missing): run `make lab-tools`") from None
    if doc.get("schema") != SCHEMA:
        raise LabError(f"{path} was written by another version of the lab builder: run `make lab-tools`")
    tools = LabTools(
        {k: Path(v) for k, v in doc["binaries"].items()},
        [Path(p) for p in doc["stages"]],
        [Path(p) for p in doc["crds"]],
        dict(doc.get("versions", {})),
    )
    missing = [str(p) for p in [*tools.binaries.values(), *tools.stages, *tools.crds] if not p.is_file()]
    if missing or set(tools.binaries) != set(PROCESS_ORDER):
        raise LabError(f"the lab's files are incomplete ({', '.join(missing) or 'binaries'}): run `make lab-tools`")
    return tools


# ---------------------------------------------------------------------------------------------- processes


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None when it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


@dataclass
class Proc:
    name: str
    pid: int
    start: int

    def alive(self) -> bool:
        return _start_time(self.pid) == self.start


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


# ------------------------------------------------------------------------------------------------ clusters


@dataclass
class ClusterState:
    stack: str
    directory: Path
    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, Proc] = field(default_factory=dict)

    @property
    def state_file(self) -> Path:
        return self.directory / "state.json"

    @property
    def kubeconfig(self) -> Path:
        return lab_kubeconfig_path(self.directory.parent, self.stack)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    @classmethod
    def load(cls, stack: str, directory: Path) -> ClusterState:
        state = cls(stack, directory)
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            doc = json.loads(state.state_file.read_text())
            state.ports = {k: int(v) for k, v in doc["ports"].items()}
            state.procs = {k: Proc(k, int(v["pid"]), int(v["start"])) for k, v in doc["processes"].items()}
        return state

    def save(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        doc = {
            "stack": self.stack,
            "ports": self.ports,
            "processes": {n: {"pid": p.pid, "start": p.start} for n, p in self.procs.items()},
        }
        self.state_file.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")

    def running(self) -> list[str]:
        return [n for n in PROCESS_ORDER if n in self.procs and self.procs[n].alive()]

    def credentials(self, lab_dir: Path, who: str = "admin") -> Credentials:
        pair = self.pki(who)
        return Credentials(self.server, lab_dir / "ca.crt", pair.cert, pair.key)

    def pki(self, who: str) -> pki.KeyPair:
        return pki.KeyPair(self.directory / "pki" / f"{who}.crt", self.directory / "pki" / f"{who}.key")


@dataclass(frozen=True)
class Workload:
    kind: str
    namespace: str
    name: str
    ready: str
    ok: bool


@dataclass(frozen=True)
class ClusterStatus:
    stack: str
    server: str | None
    kubeconfig: Path
    processes: dict[str, bool]
    healthy: bool
    nodes_ready: int = 0
    nodes: int = 0
    workloads: list[Workload] = field(default_factory=list)
    # Pods requesting GPUs: name -> the node they run on ("" while Pending), and whether that node has GPUs.
    gpu_pods: dict[str, tuple[str, bool]] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)
    error: str | None = None


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(path: Path, *, stack: str, server: str, ca: Path, cert: Path, key: Path) -> None:
    """A self-contained kubeconfig (certificates inline), so it can travel as one secret value."""
    name = f"edgefm-lab-{stack}"
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": _b64(ca)}}],
        "users": [{"name": name, "user": {"client-certificate-data": _b64(cert), "client-key-data": _b64(key)}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


class Lab:
    """The lab of one checkout: `root` holds `stacks/` and the placement policy."""

    def __init__(self, root: Path, lab_dir: Path | None = None, env: Mapping[str, str] | None = None) -> None:
        self.root = root.resolve()
        self.dir = (lab_dir or default_lab_dir(self.root)).resolve()
        self.env = dict(os.environ if env is None else env)
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    # -------------------------------------------------------------------------------------------- plan

    def plan(self) -> list[ClusterPlan]:
        """One cluster for the hub (if present) and one for every site, the stack files validated as the program
        would. The hub's access shards get none: their objects live on the hub's cluster."""
        stacks = self.root / STACKS_DIR
        policy = load_policy(self.root / PLACEMENT_FILE)
        paths = stack_files(stacks)
        if not paths:
            raise LabError(f"{stacks} has no stack files: nothing to run")
        # Validated like a real run (no render root, no lab): bad stack files stop the lab with their problems.
        report = check_fleet(paths, policy, env={})
        if report.problems:
            raise ConfigError(report.problems)
        plans = [hub_plan(HUB_STACK, report.hub.hub.region)] if report.hub is not None else []
        return plans + [site_plan(report.sites[s]) for s in sorted(report.sites)]

    def cluster(self, stack: str) -> ClusterState:
        return ClusterState.load(stack, self.dir / stack)

    def kubeconfig(self, stack: str) -> Path:
        return lab_kubeconfig_path(self.dir, stack)

    # ---------------------------------------------------------------------------------------------- up

    def up(self, progress: Progress | None = None) -> list[ClusterStatus]:
        """Starts every cluster that is not healthy; healthy ones are left as they are. Idempotent."""
        say = progress or (lambda _step, _msg: None)
        tools = load_tools(self.env)
        plans = self.plan()
        self.dir.mkdir(parents=True, exist_ok=True)
        ca = pki.ensure_ca(self.dir)
        sa = pki.ensure_signing_key(self.dir)
        stages = self.dir / "controller-stages.yaml"
        stages.write_text(CONTROLLER_STAGES)

        to_start: list[tuple[ClusterPlan, ClusterState]] = []
        for plan in plans:
            state = self.cluster(plan.stack)
            if len(state.running()) == len(PROCESS_ORDER) and self._api(state).ready():
                say(plan.stack, f"already running at {state.server}")
                self._prepare(plan, state, tools, say)
                continue
            self._stop(state)
            self._allocate(state)
            self._certificates(state, ca)
            to_start.append((plan, state))

        for plan, state in to_start:
            self._launch(state, "etcd", self._etcd_argv(state, tools, ca))
            self._launch(state, "kube-apiserver", self._apiserver_argv(state, tools, ca, sa))
            say(plan.stack, f"starting etcd and kube-apiserver on {state.server}")
        for plan, state in to_start:
            self._wait_ready(state)
            say(plan.stack, "kube-apiserver ready")
            # Only now: the controller-manager gives up within seconds while RBAC's bootstrap roles are missing.
            self._launch(state, "kube-controller-manager", self._controller_manager_argv(state, tools, ca, sa))
            self._launch(state, "kube-scheduler", self._scheduler_argv(state, tools))
            self._launch(state, "kwok", self._kwok_argv(state, tools, stages))
        # CRDs and nodes go to every cluster at once: each apiserver takes seconds to establish the CRDs.
        with ThreadPoolExecutor(max_workers=max(1, len(to_start))) as pool:
            for done in [pool.submit(self._prepare, p, s, tools, say) for p, s in to_start]:
                done.result()
        for plan, state in to_start:
            self._wait_nodes(plan, state)
            say(plan.stack, f"{len(plan.nodes)} node(s) ready")
        return [self.cluster_status(p.stack) for p in plans]

    def _allocate(self, state: ClusterState) -> None:
        # The same ports as last time where they are free: a restarted lab keeps its kubeconfigs' addresses,
        # so stacks already deployed to it see no change in their provider.
        for name in ("etcd", "etcd-peer", "apiserver"):
            if name not in state.ports or not port_free(state.ports[name]):
                state.ports[name] = free_port()
        state.save()

    def _certificates(self, state: ClusterState, ca: pki.KeyPair) -> None:
        pki.issue(ca, state.pki("serving"), common_name=f"edgefm-lab-{state.stack}", server=True, client=True)
        for who, (cn, org) in IDENTITIES.items():
            pki.issue(ca, state.pki(who), common_name=cn, organization=org, client=True)
            if who != "admin":
                creds = state.credentials(self.dir, who)
                write_kubeconfig(
                    state.directory / f"{who}.kubeconfig",
                    stack=state.stack,
                    server=state.server,
                    ca=creds.ca,
                    cert=creds.cert,
                    key=creds.key,
                )
        admin = state.credentials(self.dir)
        write_kubeconfig(
            state.kubeconfig, stack=state.stack, server=state.server, ca=admin.ca, cert=admin.cert, key=admin.key
        )

    def _etcd_argv(self, state: ClusterState, tools: LabTools, ca: pki.KeyPair) -> list[str]:
        client = f"https://127.0.0.1:{state.ports['etcd']}"
        peer = f"http://127.0.0.1:{state.ports['etcd-peer']}"
        serving = state.pki("serving")
        return [
            str(tools.binaries["etcd"]),
            "--name=lab",
            f"--data-dir={state.directory / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=lab={peer}",
            f"--cert-file={serving.cert}",
            f"--key-file={serving.key}",
            f"--trusted-ca-file={ca.cert}",
            "--client-cert-auth=true",
            # A lab's data is disposable; skipping fsync keeps a busy machine's disks out of the start time.
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ]

    def _apiserver_argv(self, state: ClusterState, tools: LabTools, ca: pki.KeyPair, sa: pki.KeyPair) -> list[str]:
        serving = state.pki("serving")
        return [
            str(tools.binaries["kube-apiserver"]),
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={state.ports['apiserver']}",
            # The default reconciler writes the advertise address into the kubernetes Service's endpoints,
            # which loopback addresses are refused for.
            "--endpoint-reconciler-type=none",
            f"--etcd-servers=https://127.0.0.1:{state.ports['etcd']}",
            f"--etcd-cafile={ca.cert}",
            f"--etcd-certfile={serving.cert}",
            f"--etcd-keyfile={serving.key}",
            f"--tls-cert-file={serving.cert}",
            f"--tls-private-key-file={serving.key}",
            f"--client-ca-file={ca.cert}",
            "--authorization-mode=Node,RBAC",
            "--anonymous-auth=false",
            f"--service-account-issuer={state.server}",
            f"--service-account-key-file={sa.cert}",
            f"--service-account-signing-key-file={sa.key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            "--profiling=false",
            "--v=0",
        ]

    def _controller_manager_argv(
        self, state: ClusterState, tools: LabTools, ca: pki.KeyPair, sa: pki.KeyPair
    ) -> list[str]:
        kubeconfig = state.directory / "kube-controller-manager.kubeconfig"
        return [
            str(tools.binaries["kube-controller-manager"]),
            f"--kubeconfig={kubeconfig}",
            # No serving port: health is read from the apiserver and from the process itself.
            "--secure-port=0",
            "--leader-elect=false",
            # Each controller acts under its own service account, as the bootstrap RBAC policy expects.
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={sa.key}",
            f"--root-ca-file={ca.cert}",
            f"--cluster-signing-cert-file={ca.cert}",
            f"--cluster-signing-key-file={ca.key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--profiling=false",
            "--v=0",
        ]

    def _scheduler_argv(self, state: ClusterState, tools: LabTools) -> list[str]:
        kubeconfig = state.directory / "kube-scheduler.kubeconfig"
        return [
            str(tools.binaries["kube-scheduler"]),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--secure-port=0",
            "--leader-elect=false",
            "--profiling=false",
            "--v=0",
        ]

    def _kwok_argv(self, state: ClusterState, tools: LabTools, controller_stages: Path) -> list[str]:
        configs = [*tools.stages, controller_stages]
        return [
            str(tools.binaries["kwok"]),
            f"--kubeconfig={state.directory / 'kwok.kubeconfig'}",
            "--manage-all-nodes=true",
            # Heartbeats through node Leases (the stage refreshes node status only every ten minutes): without
            # them the node lifecycle controller marks every node NotReady after its grace period.
            "--node-lease-duration-seconds=40",
            f"--cidr={POD_CIDR}",
            f"--config={','.join(str(c) for c in configs)}",
            "--v=WARN",
        ]

    def _launch(self, state: ClusterState, name: str, argv: Sequence[str]) -> None:
        logs = state.directory / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in self.env.items() if k in ("PATH", "HOME", "TMPDIR", "LANG")}
        # The Go runtime collects at half its default heap growth: 25 processes share one machine's memory.
        env["GOGC"] = "50"
        with (logs / f"{name}.log").open("ab") as log:
            child = subprocess.Popen(
                list(argv),
                cwd=state.directory,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own session: the lab outlives the command that started it, and Ctrl-C there stops nothing.
                start_new_session=True,
            )
        self._children[child.pid] = child
        start = None
        for _ in range(50):
            start = _start_time(child.pid)
            if start is not None:
                break
            time.sleep(0.01)
        if start is None:
            raise LabError(f"{state.stack}: {name} exited at once; see {logs / f'{name}.log'}")
        state.procs[name] = Proc(name, child.pid, start)
        state.save()

    def _api(self, state: ClusterState) -> KubeApi:
        return KubeApi(state.credentials(self.dir))

    def _log_tail(self, state: ClusterState, name: str) -> str:
        path = state.directory / "logs" / f"{name}.log"
        with contextlib.suppress(OSError):
            return "\n".join(path.read_text(errors="replace").splitlines()[-15:])
        return ""

    def _check_alive(self, state: ClusterState) -> None:
        for name, proc in state.procs.items():
            if not proc.alive():
                raise LabError(
                    f"{state.stack}: {name} stopped (log: {state.directory / 'logs' / f'{name}.log'}):\n"
                    + self._log_tail(state, name)
                )

    def _wait_ready(self, state: ClusterState) -> None:
        api = self._api(state)
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while not api.ready():
                self._check_alive(state)
                if time.monotonic() > deadline:
                    raise LabError(f"{state.stack}: kube-apiserver not ready after {START_TIMEOUT:.0f}s")
                time.sleep(0.2)
        finally:
            api.close()

    def _prepare(self, plan: ClusterPlan, state: ClusterState, tools: LabTools, say: Progress) -> None:
        """Installs the CRDs and the fake nodes (server-side apply: re-applying changes nothing)."""
        api = self._api(state)
        try:
            docs = [
                doc
                for path in tools.crds
                for doc in yaml.safe_load_all(path.read_text())
                if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition"
            ]
            # Concurrent applies let the apiserver fold the OpenAPI rebuilds each new CRD triggers.
            with ThreadPoolExecutor(max_workers=4) as pool:
                list(pool.map(api.apply, docs))
            crds = len(docs)
            wanted = {n.name for n in plan.nodes}
            for node in plan.nodes:
                manifest = node.manifest()
                # A node is created with its status (capacity, addresses), so kwok never sees it without them;
                # on an existing node the status subresource carries them.
                api.apply(manifest)
                status = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node.name}}
                api.apply({**status, "status": manifest["status"]}, status=True)
            stale = [n["metadata"]["name"] for n in api.items("api/v1/nodes") if n["metadata"]["name"] not in wanted]
            for name in stale:
                api.session.delete(f"{api.server}/api/v1/nodes/{name}", timeout=10)
            self._wait_crds(api, state)
        except KubeApiError as exc:
            raise LabError(f"{plan.stack}: {exc}") from None
        finally:
            api.close()
        say(plan.stack, f"{crds} CRDs and {len(plan.nodes)} node(s) applied")

    def _wait_crds(self, api: KubeApi, state: ClusterState) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            crds = api.items("apis/apiextensions.k8s.io/v1/customresourcedefinitions")
            pending = [
                c["metadata"]["name"]
                for c in crds
                if not any(
                    cond.get("type") == "Established" and cond.get("status") == "True"
                    for cond in (c.get("status") or {}).get("conditions") or []
                )
            ]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise LabError(f"{state.stack}: CRDs not established: {', '.join(pending)}")
            time.sleep(0.2)

    def _wait_nodes(self, plan: ClusterPlan, state: ClusterState) -> None:
        api = self._api(state)
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while True:
                self._check_alive(state)
                ready = _ready_nodes(api.items("api/v1/nodes"))
                if ready >= len(plan.nodes):
                    return
                if time.monotonic() > deadline:
                    raise LabError(f"{state.stack}: {ready}/{len(plan.nodes)} nodes ready after {START_TIMEOUT:.0f}s")
                time.sleep(0.2)
        finally:
            api.close()

    # -------------------------------------------------------------------------------------------- down

    def stacks_with_state(self) -> list[str]:
        if not self.dir.is_dir():
            return []
        return sorted(p.parent.name for p in self.dir.glob("*/state.json"))

    def down(self, purge: bool = False) -> dict[str, list[str]]:
        """Stops every process the lab started (by pid); returns what was stopped per stack."""
        stopped = {stack: self._stop(self.cluster(stack)) for stack in self.stacks_with_state()}
        if purge and self.dir.is_dir():
            shutil.rmtree(self.dir)
        return stopped

    def _stop(self, state: ClusterState) -> list[str]:
        stopped: list[str] = []
        for name in reversed(PROCESS_ORDER):
            proc = state.procs.get(name)
            if proc is None:
                continue
            if proc.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
                deadline = time.monotonic() + STOP_TIMEOUT
                while proc.alive() and time.monotonic() < deadline:
                    time.sleep(0.05)
                if proc.alive():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(proc.pid, signal.SIGKILL)
                stopped.append(name)
            self._reap(proc.pid)
            del state.procs[name]
        if state.directory.is_dir():
            state.save()
        return stopped

    def _reap(self, pid: int) -> None:
        """Collects the exit status of a process this Lab object started (others are their parent's to reap).

        A Go process's main thread shows as a zombie before its other threads are gone, and only then can it be
        reaped: so this waits (briefly) rather than polling once."""
        child = self._children.get(pid)
        if child is None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=STOP_TIMEOUT)
            del self._children[pid]

    # ---------------------------------------------------------------------------------------- scheduling

    def unschedulable(self, stack: str, settle: float = 15.0) -> list[str]:
        """Pods of the stack's cluster the scheduler cannot place, with its reason, once scheduling has settled:
        every Job has started a pod and no Pending pod is still waiting for its first scheduling attempt. An
        access shard has no cluster of its own (its objects are on the hub's) and runs no pods."""
        if is_access_stack(stack):
            return []
        state = self.cluster(stack)
        if "apiserver" not in state.ports:
            raise LabError(f"{stack}: the lab has no cluster for this stack: run `edgefm lab up`")
        api = self._api(state)
        deadline = time.monotonic() + settle
        try:
            while True:
                pods = api.items("api/v1/pods")
                jobs = api.items("apis/batch/v1/jobs")
                waiting_jobs = [
                    j
                    for j in jobs
                    if not any((j.get("status") or {}).get(k) for k in ("active", "succeeded", "failed", "ready"))
                    and not (j.get("spec") or {}).get("suspend")
                ]
                undecided = [p for p in pods if _phase(p) == "Pending" and _scheduled_condition(p) is None]
                if (not waiting_jobs and not undecided) or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        except KubeApiError as exc:
            raise LabError(f"{stack}: {exc}") from None
        finally:
            api.close()
        out: list[str] = []
        for pod in pods:
            cond = _scheduled_condition(pod)
            if _phase(pod) == "Pending" and cond is not None and cond.get("reason") == "Unschedulable":
                meta = pod["metadata"]
                out.append(f"{meta['namespace']}/{meta['name']}: {cond.get('message', 'unschedulable')}")
        return sorted(out)

    # ------------------------------------------------------------------------------------------ status

    def status(self) -> list[ClusterStatus]:
        return [self.cluster_status(p.stack) for p in self.plan()]

    def cluster_status(self, stack: str) -> ClusterStatus:
        """Health and what runs, read from the cluster's API."""
        state = self.cluster(stack)
        procs = {n: (n in state.procs and state.procs[n].alive()) for n in PROCESS_ORDER}
        if "apiserver" not in state.ports or not procs["kube-apiserver"]:
            return ClusterStatus(stack, None, state.kubeconfig, procs, False)
        api = self._api(state)
        try:
            if not api.ready():
                return ClusterStatus(stack, state.server, state.kubeconfig, procs, False, error="apiserver not ready")
            nodes = api.items("api/v1/nodes")
            gpu_nodes = {
                n["metadata"]["name"]
                for n in nodes
                if int((n.get("status") or {}).get("allocatable", {}).get(GPU_RESOURCE, "0") or 0) > 0
            }
            workloads = [_deployment(d) for d in api.items("apis/apps/v1/deployments")]
            workloads += [_job(j) for j in api.items("apis/batch/v1/jobs")]
            gpu_pods: dict[str, tuple[str, bool]] = {}
            pending: list[str] = []
            for pod in api.items("api/v1/pods"):
                meta, spec = pod["metadata"], pod.get("spec") or {}
                ident = f"{meta['namespace']}/{meta['name']}"
                if (pod.get("status") or {}).get("phase") == "Pending":
                    pending.append(ident)
                if _requests_gpu(spec):
                    node = spec.get("nodeName") or ""
                    gpu_pods[ident] = (node, node in gpu_nodes)
        except KubeApiError as exc:
            return ClusterStatus(stack, state.server, state.kubeconfig, procs, False, error=str(exc))
        finally:
            api.close()
        healthy = all(procs.values()) and _ready_nodes(nodes) == len(nodes) > 0
        return ClusterStatus(
            stack,
            state.server,
            state.kubeconfig,
            procs,
            healthy,
            _ready_nodes(nodes),
            len(nodes),
            sorted(workloads, key=lambda w: (w.namespace, w.kind, w.name)),
            gpu_pods,
            sorted(pending),
        )


def _phase(pod: Mapping[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase", ""))


def _scheduled_condition(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled":
            return cond  # type: ignore[no-any-return]
    return None


def _ready_nodes(nodes: Sequence[Mapping[str, Any]]) -> int:
    return sum(
        1
        for n in nodes
        if any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (n.get("status") or {}).get("conditions") or []
        )
    )


def _deployment(d: Mapping[str, Any]) -> Workload:
    want = int((d.get("spec") or {}).get("replicas", 1))
    have = int((d.get("status") or {}).get("availableReplicas", 0) or 0)
    meta = d["metadata"]
    return Workload("Deployment", meta["namespace"], meta["name"], f"{have}/{want} available", have >= want)


def _job(j: Mapping[str, Any]) -> Workload:
    """A Job is fine while it runs or once complete, as the health gate judges it; failed is not (a CronJob's run
    caught mid-flight is not a problem)."""
    status = j.get("status") or {}
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    complete = conditions.get("Complete") == "True"
    failed = conditions.get("Failed") == "True"
    meta = j["metadata"]
    word = "complete" if complete else f"{status.get('active', 0) or 0} active, {status.get('failed', 0) or 0} failed"
    return Workload("Job", meta["namespace"], meta["name"], word, complete or not failed)


def _requests_gpu(spec: Mapping[str, Any]) -> bool:
    for c in spec.get("containers") or []:
        res = c.get("resources") or {}
        if GPU_RESOURCE in (res.get("limits") or {}) or GPU_RESOURCE in (res.get("requests") or {}):
            return True
    return False
