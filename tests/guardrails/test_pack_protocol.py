"""The pack as the engine runs it: `python -m pulumi.policy <engine> policies/guardrails` serves the analyzer
gRPC protocol; these tests play the engine's side (GetAnalyzerInfo, Configure, Analyze, AnalyzeStack)."""

from __future__ import annotations

import json
import select
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]  # grpcio ships without type stubs
import pytest
from google.protobuf import json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from tests.guardrails.guardrail_builders import container, deployment, facts, service

PACK_DIR = Path(__file__).resolve().parents[2] / "policies" / "guardrails"
STARTUP_TIMEOUT_S = 60


# How a pack is started: the CLI runs the pack's executable `analyzer` itself as the analyzer plugin (logging
# flags, then the engine address); Python language hosts use the SDK's module runner (engine address, pack
# directory) or, newer ones, run the directory's __main__.py with the engine address.
LAUNCHERS = {
    "executable": [str(PACK_DIR / "analyzer"), "--logtostderr", "-v=9", "127.0.0.1:1"],
    "module-runner": [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:1", str(PACK_DIR)],
    "bare-directory": [sys.executable, "-u", str(PACK_DIR), "127.0.0.1:1"],
}


@pytest.fixture(scope="module", params=sorted(LAUNCHERS))
def analyzer(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    proc = subprocess.Popen(
        LAUNCHERS[request.param],
        # The engine's working directory is the program's, not the pack's.
        cwd=tmp_path_factory.mktemp("program"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], STARTUP_TIMEOUT_S)
        line = proc.stdout.readline() if ready else ""
        if not line.strip().isdigit():
            proc.kill()
            _, err = proc.communicate(timeout=10)
            pytest.fail(f"policy pack did not start (stdout {line!r}):\n{err}")
        channel = grpc.insecure_channel(f"127.0.0.1:{line.strip()}")
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        proc.kill()
        proc.wait(timeout=10)


def struct(props: Mapping[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    json_format.ParseDict(json.loads(json.dumps(props)), s)
    return s


def configure(stub: analyzer_pb2_grpc.AnalyzerStub, config: Mapping[str, Mapping[str, Any]]) -> None:
    request = analyzer_pb2.ConfigureAnalyzerRequest()
    for policy, props in config.items():
        request.policyConfig[policy].CopyFrom(
            analyzer_pb2.PolicyConfig(enforcementLevel=analyzer_pb2.MANDATORY, properties=struct(props))
        )
    stub.Configure(request)


def test_analyzer_info_lists_policies_with_schemas(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    from google.protobuf import empty_pb2

    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == "edgefm-guardrails"
    policies = {p.name: p for p in info.policies}
    assert len(policies) == 19
    assert policies["k8s-required-labels"].enforcementLevel == analyzer_pb2.ADVISORY
    assert policies["data-sovereignty"].enforcementLevel == analyzer_pb2.MANDATORY
    schema = json_format.MessageToDict(policies["images-pinned-allowed-registries"].configSchema.properties)
    assert "nvcr.io/nvidia" in schema["allowedRegistries"]["default"]


def test_analyze_a_resource(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    configure(analyzer, {})
    d = deployment("triton", [container("triton", "nvcr.io/nvidia/tritonserver:latest")])
    response = analyzer.Analyze(
        analyzer_pb2.AnalyzeRequest(type=d.type, properties=struct(d.props), urn=d.urn, name=d.name)
    )
    found = [(x.policyName, x.message) for x in response.diagnostics]
    assert len(found) == 1 and found[0][0] == "images-pinned-allowed-registries"
    assert "Deployment 'triton'" in found[0][1] and "floating tag 'latest'" in found[0][1]


def test_configuration_reaches_the_policies(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    configure(analyzer, {"images-pinned-allowed-registries": {"allowedRegistries": ["registry.site.local"]}})
    try:
        d = deployment("triton", [container("triton", "nvcr.io/nvidia/tritonserver:25.01-py3")])
        response = analyzer.Analyze(
            analyzer_pb2.AnalyzeRequest(type=d.type, properties=struct(d.props), urn=d.urn, name=d.name)
        )
        assert [x.policyName for x in response.diagnostics] == ["images-pinned-allowed-registries"]
    finally:
        configure(analyzer, {})


def test_analyze_a_stack(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    configure(analyzer, {})
    svc = service("triton", "LoadBalancer")
    resources = [facts(), svc]
    request = analyzer_pb2.AnalyzeStackRequest(
        resources=[
            analyzer_pb2.AnalyzerResource(type=r.type, properties=struct(r.props), urn=r.urn, name=r.name)
            for r in resources
        ]
    )
    response = analyzer.AnalyzeStack(request)
    found = {(x.policyName, x.urn) for x in response.diagnostics}
    assert ("k8s-no-external-services", svc.urn) in found
    # No identities or S3 buckets on a site: those policies answer "not applicable".
    assert {x.policy_name for x in response.not_applicable} >= {
        "identity-site-read-only",
        "storage-aws-bucket-hardening",
    }
