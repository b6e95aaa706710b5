"""The deployment files agree with the code's single definition of a hub's queues."""

from __future__ import annotations

import json
import re
from pathlib import Path

from dtf_sb.cli._settings import ENV
from dtf_sb.options import TaskHubOptions
from dtf_sb.servicebus.entities import emulator_config, hub_queue_definitions

ROOT = Path(__file__).resolve().parents[1]
BICEP = (ROOT / "infra" / "bicep" / "main.bicep").read_text()


def _iso_seconds(text: str) -> float:
    m = re.fullmatch(r"PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?", text)
    assert m, text
    h, mi, s = (int(g or 0) for g in m.groups())
    return h * 3600 + mi * 60 + s


def _bicep_param_default(name: str) -> str:
    m = re.search(rf"^param {name} \w+ = '?([^'\n]+)'?$", BICEP, re.MULTILINE)
    assert m, f"param {name} with a default is missing from main.bicep"
    return m.group(1)


def test_official_emulator_config_is_generated_from_the_code() -> None:
    on_disk = json.loads((ROOT / "infra" / "emulator" / "Config.json").read_text())
    assert on_disk == emulator_config(TaskHubOptions(hub_name="dtfsb"))


def test_bicep_queues_match_the_hub_definitions() -> None:
    options = TaskHubOptions(hub_name=_bicep_param_default("hubName"))
    definitions = {q.name: q for q in hub_queue_definitions(options)}
    declared = re.findall(r"\{ suffix: '(\w+)', requiresSession: (true|false) \}", BICEP)
    assert {f"{options.hub_name}/{suffix}" for suffix, _ in declared} == set(definitions)
    for suffix, sessions in declared:
        assert definitions[f"{options.hub_name}/{suffix}"].requires_session == (sessions == "true")
    assert all(q.requires_duplicate_detection for q in definitions.values())
    assert "requiresDuplicateDetection: true" in BICEP
    assert int(_bicep_param_default("maxDeliveryCount")) == options.max_delivery_count
    assert _iso_seconds(_bicep_param_default("lockDuration")) == options.lock_duration
    assert (
        _iso_seconds(_bicep_param_default("duplicateDetectionWindow")) == options.duplicate_detection_window
    )
    # Resource Manager reserves '/', so the template spells the separator '~'.
    assert "name: '${hubName}~${q.suffix}'" in BICEP


def test_bicep_worker_environment_uses_the_cli_variables() -> None:
    names = set(re.findall(r"\{ name: '(DTF_SB_\w+)'", BICEP))
    assert names == {ENV["hub"], ENV["fully_qualified_namespace"], ENV["storage_account_url"]}


def test_bicep_braces_and_brackets_balance() -> None:
    code = re.sub(r"'[^'\n]*'", "''", re.sub(r"//[^\n]*", "", BICEP))
    for open_, close in ("{}", "[]", "()"):
        assert code.count(open_) == code.count(close), f"unbalanced {open_}{close} in main.bicep"


def test_compose_mounts_the_generated_config() -> None:
    compose = (ROOT / "infra" / "emulator" / "docker-compose.yml").read_text()
    assert "./Config.json:/ServiceBus_Emulator/ConfigFiles/Config.json" in compose


def test_dockerfile_runs_unprivileged_with_healthcheck() -> None:
    dockerfile = (ROOT / "infra" / "docker" / "Dockerfile").read_text()
    assert re.search(r"^USER 10001$", dockerfile, re.MULTILINE)
    assert "HEALTHCHECK" in dockerfile and "/health" in dockerfile
    assert 'ENTRYPOINT ["dtf-sb"]' in dockerfile
