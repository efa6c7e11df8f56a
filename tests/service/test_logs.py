"""Log output: JSON one object per line, readable console lines, library chatter held at WARNING."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from carbon_node.service.logs import configure_logging, resolve_format


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_json_format_writes_one_json_object_per_event() -> None:
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    structlog.get_logger("carbon_node.test").info("task_answered", task_id="1.1", mode="tracker", carbon_g=0.5)
    structlog.get_logger("carbon_node.test").warning("second_event")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["event"] == "task_answered"
    assert (first["task_id"], first["mode"], first["carbon_g"], first["level"]) == ("1.1", "tracker", 0.5, "info")
    assert "timestamp" in first


def test_stdlib_logging_goes_through_the_same_renderer() -> None:
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    logging.getLogger("cyclonedds.something").warning("plain %s", "stdlib")
    record = json.loads(out.getvalue())
    assert (record["event"], record["level"], record["logger"]) == ("plain stdlib", "warning", "cyclonedds.something")


def test_console_format_is_one_readable_line_per_event() -> None:
    out = Terminal()
    configure_logging("console", "info", stream=out)
    structlog.get_logger("carbon_node.test").info("node_started", domain_id=7)
    text = out.getvalue()
    assert len(text.splitlines()) == 1
    assert "node_started" in text and "domain_id" in text and "7" in text
    assert not text.lstrip().startswith("{")


def test_auto_is_console_on_a_terminal_and_json_elsewhere() -> None:
    assert resolve_format("auto", Terminal()) == "console"
    assert resolve_format("auto", io.StringIO()) == "json"


def test_library_info_chatter_is_dropped_but_warnings_kept() -> None:
    out = io.StringIO()
    configure_logging("json", "debug", stream=out)
    logging.getLogger("transformers.modeling_utils").info("loading weights")
    logging.getLogger("carbontracker.root.err").info("Detected CPU: x")
    logging.getLogger("carbontracker.root.err").warning("no RAPL")
    lines = [json.loads(line)["event"] for line in out.getvalue().splitlines()]
    assert lines == ["no RAPL"]


def test_carbontracker_stdout_handlers_are_removed_but_file_handlers_kept(tmp_path: object) -> None:
    chatty = logging.getLogger("carbontracker.demo.output")
    chatty.propagate = False
    stream_handler = logging.StreamHandler(io.StringIO())
    file_handler = logging.FileHandler(str(tmp_path) + "/ct.log")  # type: ignore[operator]
    chatty.addHandler(stream_handler)
    chatty.addHandler(file_handler)
    try:
        configure_logging("json", "info", stream=io.StringIO())
        assert chatty.handlers == [file_handler]
        assert chatty.propagate
    finally:
        file_handler.close()
        chatty.removeHandler(file_handler)


def test_level_threshold_filters_our_own_events() -> None:
    out = io.StringIO()
    configure_logging("json", "warning", stream=out)
    structlog.get_logger("carbon_node.test").info("hidden")
    structlog.get_logger("carbon_node.test").error("shown")
    assert [json.loads(line)["event"] for line in out.getvalue().splitlines()] == ["shown"]
