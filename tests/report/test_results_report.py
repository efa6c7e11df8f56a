"""``carbon-node results`` and ``carbon-node report`` on the journal of a real node, and the report as a
person sees it: rendered by headless Chromium, offline."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from carbon_node.bus.orchestrator import Orchestrator
from carbon_node.core import TaskId, TaskOutput, base_extra_data, decode_extra_data
from carbon_node.report.page import EMPTY_MESSAGE, number
from carbon_node.report.results import FIELDS, Answer, Query, parse_since, read_answers
from carbon_node.report.summary import Stats, summarize
from carbon_node.service.journal import SqliteJournal
from carbon_node.testing import make_inputs
from carbon_node.wire import HWResourceImpl, MLModelImpl, Status, UserInputImpl
from tests.conftest import missing_tool, next_domain

REPO = Path(__file__).resolve().parents[2]
IDLE_TIMEOUT_S = 60.0
ANSWER_TIMEOUT_S = 180.0
EXIT_TIMEOUT_S = 30.0
CHROMIUM_TIMEOUT_S = 120.0


def carbon_node(*args: str, env: dict[str, str] | None = None, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("CARBON_NODE_", "SUSTAINML_", "CT_"))}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "carbon_node", *args], env=environ, capture_output=True, text=True, timeout=timeout_s
    )


@dataclass(frozen=True)
class NodeRun:
    """A journal written by a real ``carbon-node run``, and what the orchestrator received."""

    state_dir: Path
    journal: Path
    outputs: dict[str, dict[str, Any]]
    """Per task id: the published doubles and extra_data."""
    models: dict[str, str]
    """Short name -> the model string sent."""
    results_while_running: list[dict[str, Any]]


def _task(
    orchestrator: Orchestrator, task_id: TaskId, model: str, *, model_path: str = "", latency_h: float = 0.0, power_w: float = 0.0
) -> None:
    orchestrator.publish_task(
        task_id,
        MLModelImpl(model=model, model_path=model_path),
        HWResourceImpl(latency=latency_h, power_consumption=power_w),
        UserInputImpl(),
    )


def _received(output: Any) -> dict[str, Any]:
    extra, _ = decode_extra_data(output.extra_data)
    return {
        "carbon_g": output.carbon_footprint,
        "energy_kwh": output.energy_consumption,
        "grid": output.carbon_intensity,
        "extra": extra,
    }


def _results_json(*args: str, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    done = carbon_node("results", "--format", "json", *args, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def node_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeRun]:
    """One node answers: a tiny BERT measured under carbontracker (simulated 15 W CPU) twice (the second is
    cached), two ONNX models on the HW-only path (values three decades apart), NO_MODEL, and two tasks
    naming a local model directory that does not exist (errors, one message)."""
    from carbon_node.measure.tiny import build_tiny_onnx, build_tiny_text_model

    root = tmp_path_factory.mktemp("node-run")
    bert = build_tiny_text_model(root / "models" / "tiny-bert")
    onnx_file = build_tiny_onnx(root / "models" / "gemm.onnx")
    missing = root / "models" / "not-there"
    domain = next_domain()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CARBON_NODE_", "SUSTAINML_", "CT_"))}
    env.update(
        {
            "CARBON_NODE_STATE_DIR": str(root / "state"),
            "CARBON_NODE_CACHE_DIR": str(root / "cache"),
            "CARBON_NODE_SIM_CPU_TDP_W": "15",
            "CT_TARGET_SECONDS": "0.5",
            "SUSTAINML_DOMAIN_ID": str(domain),
        }
    )
    with Orchestrator(domain) as orchestrator, (root / "node.log").open("w") as node_log:
        node = subprocess.Popen(
            [sys.executable, "-m", "carbon_node", "run", "--log-format", "json", "--bus", "cyclone"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=node_log,
        )
        try:
            orchestrator.wait_status(Status.NODE_IDLE, IDLE_TIMEOUT_S)
            _task(orchestrator, TaskId(1, 1), str(bert), latency_h=1e-5, power_w=10.0)
            _task(orchestrator, TaskId(1, 2), str(bert), latency_h=2e-5, power_w=10.0)
            _task(orchestrator, TaskId(2, 1), "gemm-small", model_path=str(onnx_file), latency_h=1e-5, power_w=30.0)
            _task(orchestrator, TaskId(2, 2), "gemm-large", model_path=str(onnx_file), latency_h=1e-2, power_w=300.0)
            _task(orchestrator, TaskId(3, 1), "NO_MODEL")
            _task(orchestrator, TaskId(4, 1), str(missing), latency_h=1e-5, power_w=10.0)
            _task(orchestrator, TaskId(4, 2), str(missing), latency_h=1e-5, power_w=10.0)
            orchestrator.wait_outputs(7, ANSWER_TIMEOUT_S)
            # While the node runs: the answers not from a measurement are committed within ~0.1 s.
            deadline = time.monotonic() + 20.0
            while True:
                while_running = _results_json("--journal", str(root / "state" / "journal.sqlite3"))
                if len(while_running) == 7 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            # A reader holding a snapshot open does not stop the node from recording (WAL): 5.1 is committed meanwhile.
            journal_file = root / "state" / "journal.sqlite3"
            reader = sqlite3.connect(journal_file.as_uri() + "?mode=ro", uri=True, isolation_level=None)
            try:
                reader.execute("BEGIN")
                assert reader.execute("SELECT COUNT(*) FROM answered").fetchone()[0] == 7
                _task(orchestrator, TaskId(5, 1), "NO_MODEL")
                orchestrator.wait_output(TaskId(5, 1), 30.0)
                deadline = time.monotonic() + 20.0
                while not any(a.task_id == "5.1" for a in read_answers(journal_file)) and time.monotonic() < deadline:
                    time.sleep(0.2)
                assert reader.execute("SELECT COUNT(*) FROM answered").fetchone()[0] == 7  # its snapshot
            finally:
                reader.close()
            outputs = {str(task_id): _received(sample) for task_id, sample in orchestrator.outputs().items()}
            node.send_signal(signal.SIGTERM)
            assert node.wait(EXIT_TIMEOUT_S) == 0
        finally:
            if node.poll() is None:
                node.kill()
                node.wait(EXIT_TIMEOUT_S)
    yield NodeRun(
        state_dir=root / "state",
        journal=root / "state" / "journal.sqlite3",
        outputs=outputs,
        models={"bert": str(bert), "missing": str(missing)},
        results_while_running=while_running,
    )


# -- results -------------------------------------------------------------------------------------


def test_results_read_while_the_node_runs_and_the_node_goes_on_recording_under_a_reader(node_run: NodeRun) -> None:
    assert len(node_run.results_while_running) == 7
    with sqlite3.connect(node_run.journal.as_uri() + "?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # why readers never block the node
    final = _results_json("--journal", str(node_run.journal))
    assert final[0]["task_id"] == "5.1"  # recorded after the read, newest first
    assert len(final) == 8


def test_results_show_each_answer_of_a_real_node_with_its_figures_and_provenance(node_run: NodeRun) -> None:
    rows = {row["task_id"]: row for row in _results_json("--journal", str(node_run.journal))}
    assert list(rows["1.1"]) == list(FIELDS)
    for task_id in ("1.1", "1.2", "2.1", "2.2"):
        sent = node_run.outputs[task_id]
        assert rows[task_id]["carbon_g_per_inference"] == sent["carbon_g"]
        assert rows[task_id]["energy_kwh_per_inference"] == sent["energy_kwh"]
        assert rows[task_id]["grid_ci_g_per_kwh"] == sent["grid"]
        assert rows[task_id]["grid_ci_source"] == sent["extra"]["grid_ci_source"]
    assert rows["1.1"]["model"] == node_run.models["bert"]
    assert (rows["1.1"]["mode"], rows["1.1"]["power_source"], rows["1.1"]["scaling"], rows["1.1"]["cached"]) == (
        "tracker",
        "simulated",
        "hw_latency",
        False,
    )
    assert rows["1.2"]["cached"] is True
    assert (rows["2.2"]["model"], rows["2.2"]["mode"], rows["2.2"]["power_source"]) == (
        "gemm-large",
        "onnx_hw_only",
        "hw_provider",
    )
    assert rows["3.1"]["mode"] == "no_model"
    assert rows["3.1"]["carbon_g_per_inference"] is None  # zeros on the wire are not figures
    assert rows["4.1"]["mode"] == "error"
    assert rows["4.1"]["carbon_g_per_inference"] is None
    assert "does not exist" in rows["4.1"]["error"] and node_run.models["missing"] in rows["4.1"]["error"]
    assert rows["1.1"]["error"] is None


def test_results_filter_by_model_mode_since_and_limit(node_run: NodeRun) -> None:
    journal = str(node_run.journal)
    assert [row["task_id"] for row in _results_json("--journal", journal, "--model", "gemm-large")] == ["2.2"]
    assert sorted(row["task_id"] for row in _results_json("--journal", journal, "--model", "tiny-bert")) == ["1.1", "1.2"]
    assert sorted(row["task_id"] for row in _results_json("--journal", journal, "--mode", "error")) == ["4.1", "4.2"]
    assert len(_results_json("--journal", journal, "--since", "1h")) == 8
    assert _results_json("--journal", journal, "--since", "2999-01-01") == []
    newest = _results_json("--journal", journal, "--limit", "2")
    assert [row["task_id"] for row in newest] == [row["task_id"] for row in _results_json("--journal", journal)][:2]


def test_results_as_csv_and_as_a_table(node_run: NodeRun) -> None:
    done = carbon_node("results", "--journal", str(node_run.journal), "--format", "csv")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert tuple(rows[0]) == FIELDS
    by_id = {row["task_id"]: row for row in rows}
    assert float(by_id["2.1"]["carbon_g_per_inference"]) == node_run.outputs["2.1"]["carbon_g"]
    assert by_id["3.1"]["carbon_g_per_inference"] == ""
    assert by_id["1.2"]["cached"] == "true"
    # Piped output without --format is CSV; the table is for terminals and asked for by name.
    assert carbon_node("results", "--journal", str(node_run.journal)).stdout == done.stdout
    table = carbon_node("results", "--journal", str(node_run.journal), "--format", "table").stdout.splitlines()
    assert table[0].split()[:4] == ["TASK", "ANSWERED_AT", "(UTC)", "MODEL"]
    assert table[-1].startswith("8 answer(s)")
    assert any(line.startswith("2.2 ") and "gemm-large" in line and "onnx_hw_only" in line for line in table)


def test_results_default_to_the_journal_in_the_node_state_dir_and_read_a_copy(node_run: NodeRun, tmp_path: Path) -> None:
    from_state = _results_json(env={"CARBON_NODE_STATE_DIR": str(node_run.state_dir)})
    copy = tmp_path / "copy.sqlite3"
    shutil.copyfile(node_run.journal, copy)
    assert _results_json("--journal", str(copy)) == from_state
    with sqlite3.connect(copy) as conn:  # a later journal with more columns reads the same
        conn.execute("ALTER TABLE answered ADD COLUMN input_fingerprint TEXT")
    assert _results_json("--journal", str(copy)) == from_state
    assert len(from_state) == 8


def test_a_missing_or_corrupt_journal_is_one_line_and_exit_status_1(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"not a database, just text\n" * 200)
    other = tmp_path / "other.sqlite3"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    cases = {
        tmp_path / "absent.sqlite3": "no journal at",
        garbage: "is not a readable carbon-node journal: file is not a database",
        other: "is not a readable carbon-node journal: it has no table of answered tasks",
        tmp_path: "is not a file",
    }
    for path, message in cases.items():
        for command in ("results", "report"):
            output = ("-o", str(tmp_path / "r.html")) if command == "report" else ()
            done = carbon_node(command, "--journal", str(path), *output)
            assert done.returncode == 1, (command, path, done.stderr)
            assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
            assert str(path) in done.stderr
    assert not (tmp_path / "r.html").exists()


def test_a_bad_since_or_limit_is_a_usage_error(node_run: NodeRun) -> None:
    done = carbon_node("results", "--journal", str(node_run.journal), "--since", "yesterday")
    assert done.returncode == 2 and "--since must be" in done.stderr
    done = carbon_node("results", "--journal", str(node_run.journal), "--limit", "0")
    assert done.returncode == 2 and "--limit must be >= 1" in done.stderr


@pytest.mark.parametrize(
    ("text", "expected_s"),
    [
        ("30m", 10_000.0 - 1800.0),
        ("2h", 10_000.0 - 7200.0),
        ("1.5d", 10_000.0 - 129_600.0),
        ("1970-01-01T01:00:00", 3600.0),
        ("1970-01-01", 0.0),
        ("1970-01-01T02:00:00+01:00", 3600.0),
    ],
)
def test_since_takes_an_age_or_an_iso_time_in_utc(text: str, expected_s: float) -> None:
    assert parse_since(text, now_s=10_000.0) == expected_s


def test_stats_are_median_min_max_and_count_of_the_values_present() -> None:
    assert Stats.of([3.0, None, 1.0, 2.0, 10.0]) == Stats(2.5, 1.0, 10.0, 4)
    assert Stats.of([None]) is None


def test_query_selects_newest_first_up_to_the_limit(node_run: NodeRun) -> None:
    answers = read_answers(node_run.journal)
    assert [a.answered_at_s for a in answers] == sorted((a.answered_at_s for a in answers), reverse=True)
    newest_onnx = next(a.task_id for a in answers if a.mode == "onnx_hw_only")
    assert [a.task_id for a in Query(mode="onnx_hw_only", limit=1).select(answers)] == [newest_onnx]


# -- report --------------------------------------------------------------------------------------


def test_the_node_never_imports_the_plotting_library() -> None:
    code = (
        "import sys\n"
        "import carbon_node.service.daemon, carbon_node.cli, carbon_node.bus.runtime, carbon_node.report.results\n"
        "from carbon_node.cli import build_parser\n"
        "build_parser()\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'PIL'))\n"
        "assert not heavy, heavy\n"
        "import carbon_node.report.page\n"
        "assert 'matplotlib' not in sys.modules\n"
        "from carbon_node.report import charts\n"
        "charts.models_chart([])\n"
        "assert 'matplotlib' in sys.modules  # the check above can see it\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr


def test_the_report_summarizes_per_model_with_both_scalings(node_run: NodeRun) -> None:
    summary = summarize(read_answers(node_run.journal))
    by_model = {model.model: model for model in summary.models}
    assert list(by_model) == ["gemm-small", node_run.models["bert"], "gemm-large"]  # by median carbon
    bert = by_model[node_run.models["bert"]]
    assert (bert.answers, bert.measurements, bert.cached) == (2, 1, 1)
    published = [node_run.outputs[t]["carbon_g"] for t in ("1.1", "1.2")]
    assert bert.carbon_g == Stats(statistics.median(published), min(published), max(published), 2)
    measured = node_run.outputs["1.1"]["extra"]["measured_per_inference"]["carbon_g"]
    assert bert.measured_carbon_g == Stats(measured, measured, measured, 2)
    assert bert.hw_latency_carbon_g == bert.carbon_g  # hw_latency scaling is what was published
    assert by_model["gemm-large"].measured_carbon_g is None and by_model["gemm-large"].hw_latency_energy_kwh is not None
    assert [(group.count, group.models) for group in summary.errors] == [(2, (node_run.models["missing"],))]
    assert summary.modes["no_model"] == 2


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        missing_tool("chromium is not installed (apt-get install chromium)")
    return path


def _offline_prefix() -> list[str]:
    """Run the browser in a new network namespace (no network at all) where this user may create one."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return []
    prefix = [unshare, "--net"] + ([] if os.geteuid() == 0 else ["--map-root-user"])
    probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=30)
    return prefix if probe.returncode == 0 else []


def _render(page: Path, work: Path) -> tuple[Path, str]:
    """The page in headless Chromium, offline: a 1280x2000 screenshot and the DOM as text."""
    command = [
        *_offline_prefix(),
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={work / 'profile'}",
        "--window-size=1280,2000",
    ]
    screenshot = work / "report.png"
    shot = subprocess.run(
        [*command, f"--screenshot={screenshot}", page.as_uri()], capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S
    )
    assert shot.returncode == 0 and screenshot.is_file(), shot.stderr[-2000:]
    dom = subprocess.run([*command, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S)
    assert dom.returncode == 0, dom.stderr[-2000:]
    return screenshot, dom.stdout


def _pixels_near(screenshot: Path, colour: str, tolerance: int = 40) -> int:
    from PIL import Image

    target = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
    image = Image.open(screenshot).convert("RGB")
    return sum(
        count
        for count, pixel in image.getcolors(maxcolors=1 << 24) or []
        if all(abs(int(a) - b) <= tolerance for a, b in zip(pixel, target, strict=True))
    )


def _assert_self_contained(page: str) -> None:
    lowered = page.lower()
    for needle in ("<script", "<link", "<img", "<iframe", "@import", "url(http", 'src="', "src='", 'href="http'):
        assert needle not in lowered, needle


def test_the_report_in_a_browser_shows_both_charts_and_the_journal_numbers(node_run: NodeRun, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    started = time.monotonic()
    done = carbon_node("report", "--journal", str(node_run.journal), "-o", str(page))
    report_s = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert "8 answers, 3 model(s) with figures, 1 error message(s)" in done.stdout
    html = page.read_text()
    _assert_self_contained(html)
    started = time.monotonic()
    screenshot, dom = _render(page, tmp_path)
    render_s = time.monotonic() - started
    size_kb = page.stat().st_size / 1024
    print(f"report: {size_kb:.0f} KB written in {report_s:.1f} s (process included); Chromium screenshot + DOM {render_s:.1f} s")

    # Both charts are drawn: the scalings' colours (models chart) and the models' colours (time chart).
    from carbon_node.report.charts import _SERIES, PALETTE

    for colour in (_SERIES[0][2], _SERIES[1][2], PALETTE[0], PALETTE[1], PALETTE[2]):
        assert _pixels_near(screenshot, colour) > 40, colour
    # The page holds the journal's numbers as the test received them on the bus.
    published = [node_run.outputs[t]["carbon_g"] for t in ("1.1", "1.2")]
    energy = [node_run.outputs[t]["energy_kwh"] for t in ("1.1", "1.2")]
    measured = node_run.outputs["1.1"]["extra"]["measured_per_inference"]
    for value in (
        statistics.median(published),
        min(published),
        max(published),
        statistics.median(energy),
        measured["carbon_g"],
        measured["energy_kwh"],
        node_run.outputs["2.1"]["carbon_g"],
        node_run.outputs["2.2"]["carbon_g"],
        node_run.outputs["2.2"]["energy_kwh"],
        node_run.outputs["1.1"]["extra"]["window_s"],
    ):
        assert re.search(rf"(?<![\w.]){re.escape(number(value))}(?![\w.])", dom), value
    for text in (
        "Carbon per inference over time",
        "gCO2e per inference",
        "kWh per inference",
        "log scale",  # gemm-large is three decades above gemm-small
        "simulated (2)",
        "hw_provider (1)",
        f"world_average world ({node_run.outputs['2.1']['grid']:g} g/kWh)",
        "1 of 2",  # cached share of tiny-bert
        "does not exist",
        "2 no_model answer(s)",
        node_run.models["bert"],
    ):
        assert text in dom, text


def _journal_with_one_answer(path: Path) -> SqliteJournal:
    journal = SqliteJournal(path, max_tasks=10, retention_s=60.0)
    inputs = make_inputs(model="NO_MODEL", task_id=(7, 1))

    journal.record(TaskOutput(inputs.task_id, 0.0, 0.0, 0.0, {**base_extra_data("NO_MODEL", {}), "mode": "no_model"}))
    assert journal.flush(10.0)
    return journal


def test_reading_a_stopped_nodes_journal_leaves_its_directory_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "state" / "journal.sqlite3"
    _journal_with_one_answer(path).close()
    before = sorted(p.name for p in path.parent.iterdir())
    assert [a.task_id for a in read_answers(path)] == ["7.1"]
    assert carbon_node("results", "--journal", str(path), "--format", "json").returncode == 0
    assert sorted(p.name for p in path.parent.iterdir()) == before == ["journal.sqlite3"]


def test_a_journal_a_node_has_open_is_read_through_its_wal(tmp_path: Path) -> None:
    path = tmp_path / "state" / "journal.sqlite3"
    journal = _journal_with_one_answer(path)  # open, as a running node holds it: its last write is in the WAL
    try:
        assert (path.parent / "journal.sqlite3-wal").exists()
        assert [a.task_id for a in read_answers(path)] == ["7.1"]
    finally:
        journal.close()


def test_the_report_of_an_empty_journal_says_so(tmp_path: Path) -> None:
    journal = SqliteJournal(tmp_path / "state" / "journal.sqlite3", max_tasks=10, retention_s=60.0)
    journal.close()
    page = tmp_path / "empty.html"
    done = carbon_node("report", "--journal", str(tmp_path / "state" / "journal.sqlite3"), "-o", str(page))
    assert done.returncode == 0, done.stderr
    assert "0 answers" in done.stdout
    _assert_self_contained(page.read_text())
    screenshot, dom = _render(page, tmp_path)
    assert EMPTY_MESSAGE in dom
    assert "<svg" not in dom
    from carbon_node.report.charts import _SERIES

    assert _pixels_near(screenshot, _SERIES[0][2]) == 0
    results = carbon_node("results", "--journal", str(tmp_path / "state" / "journal.sqlite3"), "--format", "json")
    assert results.returncode == 0 and json.loads(results.stdout) == []


@pytest.mark.parametrize("command", ["results", "report"])
def test_the_commands_have_help_and_are_in_the_readme(command: str) -> None:
    done = carbon_node(command, "--help")
    assert done.returncode == 0 and done.stdout.startswith(f"usage: carbon-node {command}")
    assert f"carbon-node {command}" in (REPO / "README.md").read_text()


def _answer(index: int, model: str, carbon_g: float) -> Answer:
    return Answer(
        task_id=f"{index}.1",
        answered_at_s=1_800_000_000.0 + 60.0 * index,
        model=model,
        mode="onnx_hw_only",
        carbon_g=carbon_g,
        energy_kwh=carbon_g / 445.0,
        grid_ci_g_per_kwh=445.0,
        grid_ci_source="world_average",
        grid_ci_zone="world",
        power_source="hw_provider",
        scaling="none",
        cached=False,
        error=None,
        node_error=False,
        extra={"hw_latency_per_inference": {"carbon_g": carbon_g, "energy_kwh": carbon_g / 445.0}},
    )


def test_many_answers_over_time_are_one_inline_image_so_the_page_stays_small() -> None:
    from carbon_node.report.charts import MAX_VECTOR_POINTS, time_chart

    few = [_answer(i, f"m{i % 3}", 0.001 * (1 + i % 7)) for i in range(50)]
    many = [_answer(i, f"m{i % 3}", 0.001 * (1 + i % 7)) for i in range(MAX_VECTOR_POINTS * 5)]
    few_svg = time_chart(few, summarize(few).models)
    many_svg = time_chart(many, summarize(many).models)
    assert "data:image/png;base64," not in few_svg
    assert many_svg.count("data:image/png;base64,") == 1
    per_point = len(few_svg) / len(few)  # an upper bound of a vector marker's share of the SVG
    assert len(many_svg) < per_point * len(many) / 20


def test_model_names_are_shown_as_written_in_the_page_and_its_charts() -> None:
    from carbon_node.report.page import render_page

    answers = [_answer(1, "price$5$<b>&co", 0.1), _answer(2, "plain", 0.2)]
    page = render_page(summarize(answers), source="test")
    assert "price$5$&lt;b&gt;&amp;co" in page  # escaped in the tables and, as SVG text, in the charts
    assert "<b>" not in page


def test_the_report_without_matplotlib_says_how_to_install_it(node_run: NodeRun, tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "sys.modules['matplotlib'] = None  # as if it were not installed\n"
        "from carbon_node.cli import main\n"
        f"sys.exit(main(['report', '--journal', {str(node_run.journal)!r}, '-o', {str(tmp_path / 'r.html')!r}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 1
    assert done.stderr == "carbon-node: the report needs matplotlib, which is not installed: pip install 'carbon-node[report]'\n"
    assert not (tmp_path / "r.html").exists()
