"""deploy/ checked offline (no Docker engine, no cluster): the Kubernetes manifests against Kubernetes'
schemas (kubernetes-validate, strict) and the KEDA ScaledObject against tests/data/keda, the compose file
against the Compose Specification's schema (tests/data/compose-spec), and all of them against the code:
every TRACKPIPE_* name is a real setting, every command exists in the CLI, the KEDA trigger watches the
worker's real consumer group and topic, probes hit what the processes serve, and the grace periods cover
the edge's and the worker's drain on SIGTERM."""

from __future__ import annotations

import copy
import inspect
import json
import os
import re
import shlex
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel, ValidationError
from typer.testing import CliRunner

from trackpipe.cli import app as cli_app
from trackpipe.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
COMPOSE = ROOT / "deploy" / "compose" / "compose.yaml"
COMPOSE_ENV_EXAMPLE = ROOT / "deploy" / "compose" / "env.example"
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
DATA = ROOT / "tests" / "data"

#: the Kubernetes version the manifests are validated against (kubernetes-validate ships its schemas)
KUBERNETES_VERSION = "1.33.0"
#: the commands the deployment runs, as `trackpipe` arguments
DEPLOY_COMMANDS = {("edge",), ("worker",), ("topics", "create"), ("migrate",)}
VALID_ADMIN_KEY = "k" * 40  # a stand-in for the real secret, long enough for the settings


# ---------------------------------------------------------------------------------------------- helpers


def k8s_manifest_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def k8s_docs() -> list[dict[str, Any]]:
    docs = []
    for path in k8s_manifest_files():
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def k8s_doc(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in k8s_docs() if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in k8s_docs():
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def configmap_env() -> dict[str, str]:
    return dict(k8s_doc("ConfigMap", "trackpipe-config")["data"])


def secret_env() -> dict[str, str]:
    secret = k8s_doc("Secret", "trackpipe-secrets")
    assert "data" not in secret, "placeholders go in stringData"
    return dict(secret["stringData"])


def setting_env_names(model: type[BaseModel] = Settings, prefix: str = "TRACKPIPE_") -> set[str]:
    """Every environment variable ``Settings`` reads, the way pydantic-settings maps them: the env prefix
    plus the field name, nested models' fields after ``__`` (the env_nested_delimiter)."""
    names: set[str] = set()
    for name, field in model.model_fields.items():
        env = prefix + name.upper()
        names.add(env)  # a nested model may also be given whole, as JSON
        annotation = field.annotation
        union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
        members = typing.get_args(annotation) if union else (annotation,)
        for member in members:
            if isinstance(member, type) and issubclass(member, BaseModel):
                names |= setting_env_names(member, env + "__")
    return names


def unknown_settings(names: set[str]) -> set[str]:
    return {n for n in names if n.startswith("TRACKPIPE_")} - setting_env_names()


def isolated_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """Exactly ``env`` as the TRACKPIPE_* environment of the test process."""
    for name in [n for n in os.environ if n.upper().startswith("TRACKPIPE_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def cli_env(env: dict[str, str]) -> dict[str, str | None]:
    """A CliRunner environment: ``env`` and no other TRACKPIPE_* variable."""
    cleared: dict[str, str | None] = {n: None for n in os.environ if n.upper().startswith("TRACKPIPE_")}
    return {**cleared, **env}


def dockerfile_instructions(stage: int | None = -1) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined; of one stage (-1: the
    final one) or of all (None)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    instructions = [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln else "") for ln in lines]
    stages: list[list[tuple[str, str]]] = [[]]
    for ins in instructions:
        if ins[0] == "FROM":
            stages.append([])
        stages[-1].append(ins)
    return instructions if stage is None else stages[stage]


def dockerfile_entrypoint() -> list[str]:
    found = [json.loads(args) for ins, args in dockerfile_instructions() if ins == "ENTRYPOINT"]
    assert found, "the image has an ENTRYPOINT"
    return found[-1]


def commands_of_compose_service(service: dict[str, Any]) -> list[tuple[str, ...]]:
    """The trackpipe commands a compose service runs (image ENTRYPOINT + command, or `sh -c` lines)."""
    entrypoint = service.get("entrypoint", dockerfile_entrypoint())
    command = service.get("command", [])
    if isinstance(command, str):
        command = shlex.split(command)
    if len(entrypoint) == 2 and entrypoint[0].endswith("/sh") and entrypoint[1] == "-c":
        out = []
        for part in " ".join(command).split("&&"):
            argv = shlex.split(part)
            assert argv[0] == "trackpipe", part
            out.append(tuple(argv[1:]))
        return out
    argv = [*entrypoint, *command]
    assert argv[0] == "trackpipe", argv
    return [tuple(argv[1:])]


def commands_of_container(container: dict[str, Any]) -> tuple[str, ...]:
    argv = [*container.get("command", dockerfile_entrypoint()), *container.get("args", [])]
    assert argv[0] == "trackpipe", argv
    return tuple(argv[1:])


def seconds(duration: str | int) -> float:
    """A compose duration (``80s``, ``1m30s``) in seconds."""
    if isinstance(duration, int):
        return float(duration)
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert parts and duration, duration
    h, m, s = (int(x or 0) for x in parts.groups())
    return float(h * 3600 + m * 60 + s)


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def interpolated(value: str) -> str:
    """A compose value with ``${VAR...}`` replaced as compose would with the secrets set."""
    stand_ins = {"TRACKPIPE_ADMIN_KEY": VALID_ADMIN_KEY, "TRACKPIPE_CLICKHOUSE_PASSWORD": "pw"}
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)[^}]*\}", lambda m: stand_ins[m.group(1)], value)


# ------------------------------------------------------------------------------------ Kubernetes schemas


def test_every_kubernetes_manifest_validates_strictly() -> None:
    kinds = set()
    for doc in k8s_docs():
        kinds.add(doc["kind"])
        if doc["apiVersion"].startswith("keda.sh/"):
            continue  # not a Kubernetes kind: test_scaledobject_validates_against_its_schema
        assert kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True) == "1.33"
    assert kinds == {
        "Namespace",
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "StatefulSet",
        "Job",
        "ScaledObject",
    }


def test_strict_validation_refuses_a_misspelt_field() -> None:
    """The check above can fail: a misspelt probe field is refused, as is a wrong type."""
    edge = k8s_doc("Deployment", "trackpipe-edge")
    kubernetes_validate.validate(edge, KUBERNETES_VERSION, strict=True)
    typo = copy.deepcopy(edge)
    container = typo["spec"]["template"]["spec"]["containers"][0]
    container["readinessProb"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, KUBERNETES_VERSION, strict=True)
    wrong = copy.deepcopy(edge)
    wrong["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "80"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest_and_the_namespace() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == sorted(p.name for p in k8s_manifest_files())
    namespace = k8s_doc("Namespace")["metadata"]["name"]
    assert kustomization["namespace"] == namespace
    # namespaced in one place only: kustomize sets it on every resource
    assert all("namespace" not in d["metadata"] for d in k8s_docs())


# ---------------------------------------------------------------------------------------------- KEDA


def scaledobject_validator() -> Any:
    schema = json.loads((DATA / "keda" / "scaledobject-kafka.schema.json").read_text())
    return jsonschema_rs.validator_for(schema)


def test_scaledobject_validates_against_its_schema() -> None:
    validator = scaledobject_validator()
    scaled = k8s_doc("ScaledObject", "trackpipe-worker")
    errors = [e.message for e in validator.iter_errors(scaled)]
    assert errors == []
    # and the schema can fail: a misspelt parameter, an unquoted number, an unknown spec field
    typo = copy.deepcopy(scaled)
    trigger = typo["spec"]["triggers"][0]["metadata"]
    trigger["consumergroup"] = trigger.pop("consumerGroup")
    assert not validator.is_valid(typo)
    unquoted = copy.deepcopy(scaled)
    unquoted["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 2000
    assert not validator.is_valid(unquoted)
    unknown = copy.deepcopy(scaled)
    unknown["spec"]["maxReplicas"] = 3
    assert not validator.is_valid(unknown)


def test_scaledobject_follows_the_partitions_and_the_workers_group_and_topic(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """maxReplicaCount is TRACKPIPE_PARTITIONS; the trigger watches the group and topic the worker built
    from the ConfigMap really consumes (the Faust app of trackpipe.distributed.build_worker_app)."""
    import trackpipe.distributed as distributed

    isolated_env(monkeypatch, {**configmap_env(), **secret_env(), "TRACKPIPE_ADMIN_KEY": VALID_ADMIN_KEY})
    monkeypatch.setenv("TRACKPIPE_DATA_DIR", str(tmp_path))  # Faust makes its table dirs there
    monkeypatch.setattr(distributed, "server_backend", lambda settings, **kw: object())  # no ClickHouse
    settings = Settings()
    faust_app = distributed.build_worker_app(settings)

    scaled = k8s_doc("ScaledObject", "trackpipe-worker")
    spec = scaled["spec"]
    assert spec["maxReplicaCount"] == int(configmap_env()["TRACKPIPE_PARTITIONS"]) == settings.partitions
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    target = spec["scaleTargetRef"]
    worker = k8s_doc(target["kind"], target["name"])
    assert (target.get("apiVersion", "apps/v1"), worker["kind"]) == ("apps/v1", "StatefulSet")
    assert worker["metadata"]["name"] == "trackpipe-worker"
    assert commands_of_container(worker["spec"]["template"]["spec"]["containers"][0]) == ("worker",)

    [trigger] = spec["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    assert meta["consumerGroup"] == faust_app.conf.id  # Faust's consumer group_id is conf.id
    consumed = {t for agent in faust_app.agents.values() for t in agent.channel.topics}
    assert meta["topic"] in consumed
    assert meta["topic"] == settings.kafka_topic
    assert meta["bootstrapServers"] == settings.kafka_bootstrap
    assert meta["offsetResetPolicy"] == faust_app.conf.consumer_auto_offset_reset


# ------------------------------------------------------------------------------------------- compose


def compose_validator() -> Any:
    schema = json.loads((DATA / "compose-spec" / "compose-spec.json").read_text())
    return jsonschema_rs.validator_for(schema)


def test_compose_file_validates_against_the_compose_specification() -> None:
    validator = compose_validator()
    doc = compose()
    assert [e.message for e in validator.iter_errors(doc)] == []
    typo = copy.deepcopy(doc)
    typo["services"]["edge"]["helthcheck"] = typo["services"]["edge"].pop("healthcheck")
    assert not validator.is_valid(typo)
    wrong = copy.deepcopy(doc)
    wrong["services"]["edge"]["depends_on"]["migrate"]["condition"] = "service_finished"
    assert not validator.is_valid(wrong)


def test_compose_runs_migration_first_then_edges_and_workers() -> None:
    services = compose()["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    kafka_env = compose_env(services["kafka"])  # KRaft: the broker is its own controller, no ZooKeeper
    assert set(kafka_env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "KAFKA_CONTROLLER_QUORUM_VOTERS" in kafka_env
    assert not any("ZOOKEEPER" in name for name in kafka_env)
    assert re.fullmatch(r"clickhouse/clickhouse-server:26\.\d+(\.\d+)*", services["clickhouse"]["image"])
    assert commands_of_compose_service(services["migrate"]) == [("topics", "create"), ("migrate",)]
    assert services["migrate"]["restart"] == "no"
    for name, command in (("edge", ("edge",)), ("worker", ("worker",))):
        service = services[name]
        assert commands_of_compose_service(service) == [command]
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert service["deploy"]["replicas"] >= 1
    for name in ("migrate", "edge", "worker"):
        assert services[name]["image"] == services["edge"]["image"]
    for name in ("kafka", "clickhouse"):
        assert services["migrate"]["depends_on"][name]["condition"] == "service_healthy"
        assert "healthcheck" in services[name]
    partitions = int(compose_env(services["worker"])["TRACKPIPE_PARTITIONS"])
    assert services["worker"]["deploy"]["replicas"] <= partitions  # more workers than partitions idle
    # data survives the containers
    volumes = set(compose()["volumes"])
    assert {v.split(":")[0] for v in services["kafka"]["volumes"]} <= volumes
    assert {v.split(":")[0] for v in services["clickhouse"]["volumes"]} <= volumes
    assert any(v.endswith(":/var/lib/kafka/data") for v in services["kafka"]["volumes"])
    assert any(v.endswith(":/var/lib/clickhouse") for v in services["clickhouse"]["volumes"])


def test_compose_healthchecks_hit_what_the_processes_serve() -> None:
    services = compose()["services"]
    edge_env = compose_env(services["edge"])
    edge_check = " ".join(services["edge"]["healthcheck"]["test"])
    assert f"http://127.0.0.1:{edge_env['TRACKPIPE_PORT']}/healthz" in edge_check
    assert edge_env["TRACKPIPE_HOST"] == "0.0.0.0"
    worker_env = compose_env(services["worker"])
    worker_check = " ".join(services["worker"]["healthcheck"]["test"])
    assert f"http://127.0.0.1:{worker_env['TRACKPIPE_WORKER_METRICS_PORT']}/metrics" in worker_check
    assert worker_env["TRACKPIPE_WORKER_METRICS_HOST"] == "0.0.0.0"


def test_compose_secrets_come_from_the_environment_only() -> None:
    """No literal secret: the keys and passwords are `${VAR:?message}` (compose stops when unset), and
    env.example leaves them empty."""
    secret_names = ("TRACKPIPE_ADMIN_KEY", "TRACKPIPE_CLICKHOUSE_PASSWORD", "CLICKHOUSE_PASSWORD")
    seen = 0
    for service in compose()["services"].values():
        for name, value in compose_env(service).items():
            if name in secret_names:
                seen += 1
                assert re.fullmatch(r"\$\{TRACKPIPE_[A-Z_]+:\?[^}]+\}", value), (name, value)
    assert seen >= 5  # both trackpipe secrets in each of migrate, edge, worker; ClickHouse's password
    example = {
        k: v
        for k, _, v in (
            ln.partition("=") for ln in COMPOSE_ENV_EXAMPLE.read_text().splitlines() if ln and ln[0] != "#"
        )
    }
    assert set(example) == {"TRACKPIPE_ADMIN_KEY", "TRACKPIPE_CLICKHOUSE_PASSWORD"}
    assert all(v == "" for v in example.values())


def test_compose_settings_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each trackpipe service's environment, with the secrets given, is accepted by the settings."""
    for name in ("migrate", "edge", "worker"):
        env = {k: interpolated(v) for k, v in compose_env(compose()["services"][name]).items()}
        isolated_env(monkeypatch, env)
        settings = Settings()
        assert settings.kafka_bootstrap == "kafka:9092"
        assert settings.clickhouse_host == "clickhouse"
        assert settings.admin_key_value() == VALID_ADMIN_KEY


# ------------------------------------------------------------------------------- settings and commands


def trackpipe_names_in_use() -> dict[str, set[str]]:
    """Every TRACKPIPE_* variable the deployment files set or mention, by where."""
    word = re.compile(r"\bTRACKPIPE_[A-Z0-9]+(?:__?[A-Z0-9]+)*\b")
    found: dict[str, set[str]] = {
        "compose environment": {n for s in compose()["services"].values() for n in compose_env(s)},
        "compose interpolation": set(re.findall(r"\$\{(TRACKPIPE_[A-Za-z0-9_]+)", COMPOSE.read_text())),
        "compose env.example": set(word.findall(COMPOSE_ENV_EXAMPLE.read_text())),
        "ConfigMap": set(configmap_env()),
        "Secret": set(secret_env()),
        "container env": {
            e["name"] for _, spec in pod_specs() for c in containers(spec) for e in c.get("env", [])
        },
        "Dockerfile ENV": {
            m
            for ins, args in dockerfile_instructions(None)
            if ins == "ENV"
            for m in re.findall(r"(TRACKPIPE_[A-Za-z0-9_]+)=", args)
        },
    }
    texts = [*K8S.glob("*.yaml"), COMPOSE, COMPOSE_ENV_EXAMPLE, DOCKERFILE, DEPLOY_DOC]
    found["any text (comments, docs)"] = {n for p in texts for n in word.findall(p.read_text())}
    return found


def test_setting_names_follow_the_settings_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """The walk of the model names what pydantic-settings reads; a typo is silently ignored by the
    settings (extra="ignore"), which is why the deployment files are checked against the walk."""
    names = setting_env_names()
    assert {"TRACKPIPE_PARTITIONS", "TRACKPIPE_ADMIN_KEY", "TRACKPIPE_EDGE__DELIVERY_TIMEOUT_S"} <= names
    assert any(n.startswith("TRACKPIPE_OUTBOUND__") for n in names)
    assert unknown_settings({"TRACKPIPE_EDGE__DELIVERY_TIMEOUT", "TRACKPIPE_PARTITION"}) == {
        "TRACKPIPE_EDGE__DELIVERY_TIMEOUT",
        "TRACKPIPE_PARTITION",
    }
    isolated_env(
        monkeypatch,
        {
            "TRACKPIPE_PARTITIONS": "7",
            "TRACKPIPE_EDGE__DELIVERY_TIMEOUT_S": "3",
            "TRACKPIPE_WORKER_APP_ID": "g",
        },
    )
    read = Settings()
    assert (read.partitions, read.edge.delivery_timeout_s, read.worker_app_id) == (7, 3.0, "g")
    isolated_env(monkeypatch, {})
    default = Settings()
    isolated_env(monkeypatch, {"TRACKPIPE_PARTITION": "7", "TRACKPIPE_EDGE__DELIVERY_TIMEOUT": "3"})
    ignored = Settings()
    assert (ignored.partitions, ignored.edge.delivery_timeout_s) == (
        default.partitions,
        default.edge.delivery_timeout_s,
    )
    assert default.partitions != 7 and default.edge.delivery_timeout_s != 3


def test_every_trackpipe_variable_is_a_real_setting() -> None:
    in_use = trackpipe_names_in_use()
    for where in ("compose environment", "ConfigMap", "Secret", "Dockerfile ENV", "compose interpolation"):
        assert in_use[where], f"found no TRACKPIPE_* name in the {where}: the collection is broken"
    problems = {where: sorted(unknown_settings(names)) for where, names in in_use.items()}
    assert {w: p for w, p in problems.items() if p} == {}


def test_configmap_values_are_accepted_and_the_secret_placeholder_fails_loudly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {**configmap_env(), **secret_env()}
    isolated_env(monkeypatch, env)
    with pytest.raises(ValidationError) as failure:
        Settings()
    assert [e["loc"] for e in failure.value.errors()] == [("admin_key",)]
    # the processes exit 2 at start-up naming the variable (never its value)
    result = CliRunner().invoke(cli_app, ["migrate"], env=cli_env(env))
    assert result.exit_code == 2
    assert "TRACKPIPE_ADMIN_KEY" in result.output
    assert env["TRACKPIPE_ADMIN_KEY"] not in result.output
    # with a real key in its place, every value of the ConfigMap is accepted
    isolated_env(monkeypatch, {**env, "TRACKPIPE_ADMIN_KEY": VALID_ADMIN_KEY})
    settings = Settings()
    assert settings.partitions == int(env["TRACKPIPE_PARTITIONS"])
    assert settings.worker_store == env["TRACKPIPE_WORKER_STORE"]
    assert settings.host == "0.0.0.0"
    assert settings.worker_metrics_host == "0.0.0.0"
    assert settings.edge.delivery_timeout_s == float(env["TRACKPIPE_EDGE__DELIVERY_TIMEOUT_S"])


def deployment_commands() -> set[tuple[str, ...]]:
    commands = {commands_of_container(c) for _, spec in pod_specs() for c in containers(spec)}
    for service in compose()["services"].values():
        if service.get("image", "").startswith("trackpipe:"):
            commands.update(commands_of_compose_service(service))
    return commands


def test_the_commands_the_deployment_runs_exist_in_the_cli() -> None:
    commands = deployment_commands()
    assert commands == DEPLOY_COMMANDS
    runner = CliRunner()
    for command in sorted(commands):
        result = runner.invoke(cli_app, [*command, "--help"])
        assert result.exit_code == 0, (command, result.output)
    # and a command the CLI lacks fails the same check
    assert runner.invoke(cli_app, ["topics", "destroy", "--help"]).exit_code != 0


def test_the_job_creates_topics_before_migrating() -> None:
    job = k8s_doc("Job", "trackpipe-migrate")["spec"]["template"]["spec"]
    assert [commands_of_container(c) for c in job["initContainers"]] == [("topics", "create")]
    assert [commands_of_container(c) for c in job["containers"]] == [("migrate",)]
    assert job["restartPolicy"] in ("OnFailure", "Never")


# ------------------------------------------------------------------------------------------ the image


def test_dockerfile_builds_the_project_and_runs_trackpipe_as_non_root() -> None:
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    final = dockerfile_instructions()
    users = [args for ins, args in final if ins == "USER"]
    assert users, "the final stage sets a USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert int(user) == 10001  # the manifests' runAsUser
    for _, spec in pod_specs():
        assert spec["securityContext"]["runAsUser"] == int(user)
        assert spec["securityContext"]["runAsNonRoot"] is True
    assert dockerfile_entrypoint() == ["trackpipe"]
    assert "trackpipe" in pyproject["project"]["scripts"]
    # what `pip install .` needs is copied: the metadata, its readme and every package it finds
    copied: set[str] = set()
    for ins, args in dockerfile_instructions(None):
        if ins == "COPY" and "--from" not in args:
            sources = shlex.split(args)[:-1]
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
            copied.update(s.rstrip("/") for s in sources)
    assert {"pyproject.toml", pyproject["project"]["readme"]} <= copied
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages <= copied
    assert any(ins == "RUN" and "pip install ." in args for ins, args in dockerfile_instructions(None))


# --------------------------------------------------------------------------- probes, resources, shutdown


def test_probes_hit_what_the_edge_and_the_worker_serve() -> None:
    env = configmap_env()
    edge = k8s_doc("Deployment", "trackpipe-edge")["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in edge["ports"]}
    assert ports["http"] == int(env["TRACKPIPE_PORT"])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert edge[probe]["httpGet"]["path"] == "/healthz"
        assert edge[probe]["httpGet"]["port"] == "http"
    # the worker has no /healthz: its Prometheus server (TRACKPIPE_WORKER_METRICS_PORT) answers /metrics
    worker = k8s_doc("StatefulSet", "trackpipe-worker")["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in worker["ports"]}
    assert ports["metrics"] == int(env["TRACKPIPE_WORKER_METRICS_PORT"]) != 0
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert worker[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    service = k8s_doc("Service", "trackpipe-edge")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert (
        service["spec"]["selector"]
        == k8s_doc("Deployment", "trackpipe-edge")["spec"]["selector"]["matchLabels"]
    )


def test_every_container_has_requests_and_limits() -> None:
    for name, spec in pod_specs():
        for container in containers(spec):
            resources = container["resources"]
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[kind]), (name, container["name"], kind)


def test_edge_autoscaler_scales_the_edge_on_cpu() -> None:
    hpa = k8s_doc("HorizontalPodAutoscaler", "trackpipe-edge")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "trackpipe-edge",
    }
    [metric] = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert "replicas" not in k8s_doc("Deployment", "trackpipe-edge")["spec"]  # the autoscaler owns it
    assert "replicas" not in k8s_doc("StatefulSet", "trackpipe-worker")["spec"]  # KEDA owns it


def edge_shutdown_timeout() -> float:
    """How long `trackpipe edge` lets requests in flight finish after SIGTERM: aiohttp's run_app
    shutdown_timeout, which the command leaves at run_app's default (this fails, to be revisited, the day
    the command passes its own)."""
    from aiohttp import web

    from trackpipe import cli

    source = inspect.getsource(cli.edge)
    assert "web.run_app(" in source, "the edge is no longer served by aiohttp's run_app: revisit the drain"
    assert "shutdown_timeout" not in source, "the edge sets its own drain: use it in the manifests and here"
    return float(inspect.signature(web.run_app).parameters["shutdown_timeout"].default)


def test_edge_grace_period_covers_prestop_and_the_drain() -> None:
    drain = edge_shutdown_timeout()
    delivery = float(configmap_env()["TRACKPIPE_EDGE__DELIVERY_TIMEOUT_S"])
    body = float(configmap_env()["TRACKPIPE_EDGE__BODY_READ_TIMEOUT_S"])
    assert body + delivery <= drain  # a tracking request in flight finishes within the drain
    spec = k8s_doc("Deployment", "trackpipe-edge")["spec"]["template"]["spec"]
    pre_stop = spec["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    sleep = float(pre_stop[1])
    assert 0 < sleep
    assert spec["terminationGracePeriodSeconds"] >= sleep + drain + delivery
    edge = compose()["services"]["edge"]
    assert seconds(edge["stop_grace_period"]) >= drain + float(
        compose_env(edge)["TRACKPIPE_EDGE__DELIVERY_TIMEOUT_S"]
    )


def test_worker_grace_period_covers_the_batch_in_hand() -> None:
    from processors.runtime.faust.app import SHUTDOWN_GRACE_S

    spec = k8s_doc("StatefulSet", "trackpipe-worker")["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] > SHUTDOWN_GRACE_S
    assert seconds(compose()["services"]["worker"]["stop_grace_period"]) > SHUTDOWN_GRACE_S


def test_worker_state_lives_on_a_volume_per_pod() -> None:
    env = configmap_env()
    assert env["TRACKPIPE_WORKER_STORE"].startswith("rocksdb")
    worker = k8s_doc("StatefulSet", "trackpipe-worker")["spec"]
    [claim] = worker["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in worker["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == env["TRACKPIPE_DATA_DIR"]
    assert worker["serviceName"] == k8s_doc("Service", "trackpipe-worker")["metadata"]["name"]
    assert k8s_doc("Service", "trackpipe-worker")["spec"]["clusterIP"] == "None"
