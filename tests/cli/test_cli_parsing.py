"""The ``dtf-sb`` argument parser and the settings it resolves, without any service."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone

import pytest

from dtf_sb.cli import build_parser, main
from dtf_sb.cli._instances import _json_arg, _status_arg, _time_arg
from dtf_sb.cli._settings import ENV, CliError, connection_settings
from dtf_sb.core.status import OrchestrationStatus


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV.values():
        monkeypatch.delenv(name, raising=False)


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_every_documented_command_parses() -> None:
    cases = [
        ("start", "greet", "--input", '"x"'),
        ("status", "i1"),
        ("history", "i1", "--execution", "e1"),
        ("list", "--status", "running"),
        ("raise", "i1", "approve", "--data", "1"),
        ("terminate", "i1", "--recursive"),
        ("suspend", "i1"),
        ("resume", "i1"),
        ("rewind", "i1", "--reason", "fixed"),
        ("purge", "i1"),
        ("purge", "--status", "completed"),
        ("deadletters", "list"),
        ("deadletters", "show", "7", "--queue", "worker"),
        ("deadletters", "resubmit", "1", "2"),
        ("deadletters", "purge", "--all"),
        ("hub", "config", "--hub", "h"),
        ("worker", "app:worker"),
        ("emulator", "--port", "0"),
        ("dev", "--port", "0"),
    ]
    for argv in cases:
        args = parse(*argv)
        assert args.command == argv[0]
        assert hasattr(args, "async_handler"), argv


def test_start_options() -> None:
    args = parse(
        "start", "greet", "--input", '["a"]', "--id", "i1", "--version", "2", "--start-at", "2026-01-01T00:00:00Z",
        "--tag", "team=ops", "--tag", "env=dev", "--wait", "12.5", "--json", "--hub", "h",
    )  # fmt: skip
    assert (args.name, args.input, args.id, args.version) == ("greet", '["a"]', "i1", "2")
    assert args.tag == ["team=ops", "env=dev"] and args.wait == 12.5 and args.json and args.hub == "h"


def test_terminate_flags_and_defaults() -> None:
    assert parse("terminate", "i1").recursive is False
    args = parse("terminate", "i1", "--recursive", "--reason", "stop")
    assert args.recursive is True and args.reason == "stop"


def test_deadletter_queue_choices_and_sequence_numbers() -> None:
    args = parse("deadletters", "resubmit", "3", "5", "--queue", "tracking")
    assert args.sequence_numbers == [3, 5] and args.queue == "tracking" and not args.all
    with pytest.raises(SystemExit):
        parse("deadletters", "list", "--queue", "nowhere")
    with pytest.raises(SystemExit):
        parse("deadletters", "show", "not-a-number", "--queue", "worker")
    with pytest.raises(SystemExit):
        parse("deadletters", "show", "5")  # show needs the queue


def test_status_filters_accept_case_commas_and_repeats() -> None:
    assert _status_arg(["Running,failed", "continued-as-new"]) == [
        OrchestrationStatus.RUNNING,
        OrchestrationStatus.FAILED,
        OrchestrationStatus.CONTINUED_AS_NEW,
    ]
    assert _status_arg(None) is None
    with pytest.raises(CliError, match="unknown status 'done'; use one of: running"):
        _status_arg(["done"])


def test_times_are_iso_and_utc_by_default() -> None:
    assert _time_arg("2026-11-28T10:00:00Z", "--created-from") == datetime(
        2026, 11, 28, 10, tzinfo=timezone.utc
    )
    assert _time_arg("2026-11-28T10:00:00", "--x") == datetime(2026, 11, 28, 10, tzinfo=timezone.utc)
    assert _time_arg(None, "--x") is None
    with pytest.raises(CliError, match="--created-to must be an ISO-8601 time"):
        _time_arg("yesterday", "--created-to")


def test_json_arguments_explain_quoting() -> None:
    assert _json_arg('{"a": [1]}', "--input") == {"a": [1]}
    with pytest.raises(CliError, match=r"--input must be JSON \(quote strings"):
        _json_arg("Tokyo", "--input")


def test_settings_come_from_flags_before_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV["hub"], "from-env")
    monkeypatch.setenv(
        ENV["servicebus_connection_string"], "Endpoint=sb://env/;SharedAccessKeyName=k;SharedAccessKey=s"
    )
    monkeypatch.setenv(ENV["storage_connection_string"], "UseDevelopmentStorage=true")
    settings = connection_settings(parse("status", "i1", "--hub", "from-flag"))
    assert settings.hub == "from-flag"
    assert settings.servicebus_connection_string.startswith("Endpoint=sb://env/")
    assert not settings.uses_credential


def test_missing_settings_name_flag_and_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(CliError, match="no task hub given: pass --hub NAME or set DTF_SB_HUB"):
        connection_settings(parse("status", "i1"))
    with pytest.raises(
        CliError, match=r"--servicebus-connection-string .*DTF_SB_SERVICEBUS_CONNECTION_STRING"
    ):
        connection_settings(parse("status", "i1", "--hub", "h"))
    monkeypatch.setenv(ENV["fully_qualified_namespace"], "ns.servicebus.windows.net")
    with pytest.raises(CliError, match="no Blob Storage connection"):
        connection_settings(parse("status", "i1", "--hub", "h"))


def test_main_prints_the_error_and_returns_its_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "i1"]) == 2
    assert capsys.readouterr().err.startswith("dtf-sb: no task hub given")
    assert main(["deadletters", "resubmit", "--hub", "h", "--servicebus-connection-string", "x",
                 "--storage-connection-string", "y"]) == 2  # fmt: skip
    assert "name the messages to resubmit (SEQ ...) or pass --all" in capsys.readouterr().err


def test_usage_errors_exit_with_argparse_code() -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([])
    assert exc.value.code == 2


def test_hub_create_on_an_emulator_says_where_queues_come_from(capsys: pytest.CaptureFixture[str]) -> None:
    emulator = "Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=a;SharedAccessKey=b;UseDevelopmentEmulator=true"
    assert main(["hub", "create", "--hub", "orders", "--servicebus-connection-string", emulator]) == 2
    err = capsys.readouterr().err
    assert "dtf-sb emulator --hub orders" in err and "hub config --hub orders" in err
    assert "SharedAccessKey=b" not in err


def test_hub_config_prints_the_emulator_queues(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert main(["hub", "config", "--hub", "orders"]) == 0
    config = json.loads(capsys.readouterr().out)
    names = sorted(q["Name"] for q in config["UserConfig"]["Namespaces"][0]["Queues"])
    assert names == ["orders/orchestrator", "orders/tracking", "orders/worker"]
