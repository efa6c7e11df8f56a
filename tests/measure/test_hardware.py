"""The hardware match rule (table-driven) and the detection of this host's CPU and GPU names from /proc."""

from __future__ import annotations

from pathlib import Path

import pytest

from carbon_node.measure.hardware import (
    EXACT,
    NO_MATCH,
    WORDS,
    best_match,
    cpu_model,
    gpu_models,
    host_hardware,
    match_quality,
    normalise_hardware,
)


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("NVIDIA H100", "nvidia h100"),
        ("  NVIDIA-H100 (80GB) ", "nvidia h100 80gb"),
        ("Intel(R) Xeon(R) CPU E5-2690 v4 @ 2.60GHz", "intel r xeon r cpu e5 2690 v4 2 60ghz"),
        ("PIM_AI_1chip", "pim ai 1chip"),
        ("", ""),
        ("---", ""),
    ],
)
def test_a_name_is_normalised_to_lower_case_words_of_letters_and_digits(text: str, normal: str) -> None:
    assert normalise_hardware(text) == normal


@pytest.mark.parametrize(
    ("description", "name", "quality"),
    [
        ("NVIDIA H100", "NVIDIA H100", EXACT),
        ("nvidia  h100", "NVIDIA-H100", EXACT),  # case, spaces and punctuation do not count
        ("NVIDIA H100 80GB HBM3", "NVIDIA H100", WORDS),  # the name's words inside the description
        ("H100", "NVIDIA H100 80GB HBM3", WORDS),  # and the other way round
        ("Xeon", "Intel(R) Xeon(R) Processor", WORDS),
        ("A100", "NVIDIA A1000", NO_MATCH),  # a word is never cut
        ("NVIDIA H100", "NVIDIA A100", NO_MATCH),
        ("H100 NVIDIA", "NVIDIA H100", NO_MATCH),  # words in another order are not a run
        ("", "NVIDIA H100", NO_MATCH),  # an empty text matches nothing
        ("NVIDIA H100", "", NO_MATCH),
        ("   ", "   ", NO_MATCH),
    ],
)
def test_the_match_rule(description: str, name: str, quality: int) -> None:
    assert match_quality(description, name) == quality
    assert match_quality(name, description) == quality  # symmetric


def test_the_best_match_prefers_an_exact_name_to_a_match_by_words() -> None:
    assert best_match("NVIDIA H100", ["H100", "NVIDIA H100", "AMD"]) == (EXACT, "NVIDIA H100")
    assert best_match("NVIDIA H100 PCIe", ["AMD", "H100"]) == (WORDS, "H100")
    assert best_match("TPU", ["AMD", "H100"]) == (NO_MATCH, None)


TWO_H100 = {"0000:17:00.0": "NVIDIA H100 80GB HBM3", "0000:65:00.0": "NVIDIA H100 80GB HBM3"}


def _proc(tmp_path: Path, cpuinfo: str, gpus: dict[str, str] | None = None) -> Path:
    (tmp_path / "cpuinfo").write_text(cpuinfo)
    for bus_id, model in (gpus or {}).items():
        gpu = tmp_path / "driver" / "nvidia" / "gpus" / bus_id
        gpu.mkdir(parents=True)
        (gpu / "information").write_text(f"Model: \t\t {model}\nIRQ:   42\nGPU UUID: GPU-1\n")
    return tmp_path


def test_the_cpu_model_is_read_from_cpuinfo_x86_and_arm(tmp_path: Path) -> None:
    (tmp_path / "x86").mkdir()
    (tmp_path / "arm").mkdir()
    x86 = _proc(tmp_path / "x86", "processor\t: 0\nmodel name\t: AMD EPYC  7B13\nflags: fpu\n")
    arm = _proc(tmp_path / "arm", "processor\t: 0\nBogoMIPS\t: 108\n\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n")
    assert cpu_model(x86) == "AMD EPYC 7B13"
    assert cpu_model(arm) == "Raspberry Pi 4 Model B Rev 1.4"
    assert cpu_model(tmp_path / "absent") is None


def test_nvidia_gpus_are_read_from_the_drivers_proc_files(tmp_path: Path) -> None:
    proc = _proc(tmp_path, "model name: Intel Xeon\n", TWO_H100)
    assert gpu_models(proc) == ["NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3"]
    assert gpu_models(tmp_path / "nowhere") == []


def test_a_hosts_names_are_the_given_ones_then_its_gpus_then_its_cpu_without_duplicates(tmp_path: Path) -> None:
    proc = _proc(tmp_path, "model name: Intel Xeon\n", TWO_H100)
    names = host_hardware(["NVIDIA H100", "nvidia-h100", "  ", "lab  gpu box"], proc)
    assert names == ["NVIDIA H100", "lab gpu box", "NVIDIA H100 80GB HBM3", "Intel Xeon"]
