"""Which live measure host measures a task: the choice, table by table, and the reason it gives."""

from __future__ import annotations

from carbon_node.bus.pool_routing import HostView, choose_host


def host(host_id: str, *hardware: str, state: str = "idle", started: float = 0.0) -> HostView:
    return HostView(host_id, host_id.split(":")[0], tuple(hardware), state, started)


H100 = host("gpu1:1:a", "NVIDIA H100", "AMD EPYC 9654")
H100_B = host("gpu2:1:b", "NVIDIA H100 80GB HBM3", started=5.0)
ORIN = host("edge:1:c", "Jetson AGX Orin")


def test_a_host_whose_hardware_matches_is_chosen_with_the_name_that_matched() -> None:
    choice = choose_host("NVIDIA H100 PCIe", [ORIN, H100])
    assert choice.host == H100 and choice.hardware == "NVIDIA H100"
    assert choice.reason == "measure host gpu1:1:a has hardware 'NVIDIA H100', matching hw_description 'NVIDIA H100 PCIe'"


def test_an_exact_match_wins_over_a_match_by_words() -> None:
    choice = choose_host("nvidia h100 80gb hbm3", [H100, H100_B])
    assert choice.host == H100_B
    assert "equal to" in choice.reason


def test_no_host_for_an_empty_description_nor_for_hardware_nobody_has() -> None:
    assert choose_host("  ", [H100]).host is None
    assert choose_host("  ", [H100]).reason == "the task names no hardware (hw_description is empty)"
    none = choose_host("TPU v5e", [H100, ORIN])
    assert none.host is None
    assert none.reason.startswith(
        "no live measure host has hardware matching 'TPU v5e' (live: gpu1:1:a (NVIDIA H100, AMD EPYC 9654)"
    )
    assert choose_host("NVIDIA H100", []).reason == "no live measure host"


def test_hosts_of_the_same_hardware_share_the_work_by_queue_length() -> None:
    twin = host("gpu3:1:d", "NVIDIA H100", started=9.0)
    assert choose_host("H100", [H100, twin]).host == H100  # oldest first when nothing is queued
    assert choose_host("H100", [H100, twin], queued={H100.host_id: 1}).host == twin


def test_the_host_that_measured_the_model_last_wins_a_tie_and_a_queue_one_longer() -> None:
    twin = host("gpu3:1:d", "NVIDIA H100", started=9.0)
    assert choose_host("H100", [H100, twin], last_host=twin.host_id).host == twin
    assert choose_host("H100", [H100, twin], queued={twin.host_id: 1}, last_host=twin.host_id).host == twin
    assert choose_host("H100", [H100, twin], queued={twin.host_id: 2}, last_host=twin.host_id).host == H100


def test_an_idle_host_wins_over_a_busy_one_and_an_avoided_host_is_left_out() -> None:
    busy = host("gpu4:1:e", "NVIDIA H100", state="busy", started=-1.0)
    assert choose_host("H100", [busy, H100]).host == H100
    choice = choose_host("H100", [H100], avoid={H100.host_id})
    assert choice.host is None and "did not answer in time" in choice.reason


def test_a_reason_quotes_at_most_120_characters_of_a_long_description() -> None:
    reason = choose_host("x" * 5000, [H100]).reason
    assert len(reason) < 400 and "..." in reason


def test_a_host_that_cannot_measure_is_left_out() -> None:
    broken = host("gpu5:1:f", "NVIDIA H100", state="unavailable", started=-5.0)
    assert choose_host("H100", [broken, H100]).host == H100
    assert choose_host("H100", [broken]).reason.startswith("the measure hosts with this hardware cannot measure (unavailable)")


def test_a_host_announcing_thousands_of_long_names_is_read_within_bounds() -> None:
    from carbon_node.bus.announce import CarbonNodeAnnouncementImpl
    from carbon_node.bus.pool_routing import host_view

    flood = CarbonNodeAnnouncementImpl(
        node_id="x:1:a", role="measure_host", hardware=["n" * 10_000] * 5000, power_sources=["p"] * 5000
    )
    view = host_view(flood)
    assert len(view.hardware) == 64 and {len(name) for name in view.hardware} == {256}
    assert len(view.power_sources) == 64
