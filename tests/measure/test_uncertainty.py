"""The parts of a window's interval: how they combine, the power source's width per source, the spread."""

from __future__ import annotations

import math

import pytest

from carbon_node.measure.load_power import LoadPowerModel, SocketFacts
from carbon_node.measure.sub_windows import SubWindow, SubWindowMarks
from carbon_node.measure.uncertainty import (
    LEVEL,
    EnergyUncertainty,
    Part,
    combine,
    curve_shape_factors,
    interval,
    power_part,
    spread_part,
)


def width(part: Part) -> float:
    """high / low: how many times the top of the interval is above its bottom."""
    return part.high / part.low


def test_parts_combine_root_sum_square_in_log_space_each_side_apart() -> None:
    low, high = combine([Part("a", 0.5, 2.0, ""), Part("b", 0.5, 1.5, "")])
    assert low == pytest.approx(math.exp(-math.sqrt(2 * math.log(2) ** 2)))
    assert high == pytest.approx(math.exp(math.sqrt(math.log(2) ** 2 + math.log(1.5) ** 2)))
    assert combine([]) == (1.0, 1.0)
    assert LEVEL == "95%"


def test_the_interval_always_contains_the_value() -> None:
    for parts in ([], [Part("a", 1.0, 1.0, "")], [Part("a", 0.1, 10.0, ""), Part("b", 0.9, 1.0, "")]):
        low, high = interval(3e-7, parts)
        assert low <= 3e-7 <= high


def _load_model(power_model_overrides: dict[str, object]) -> dict[str, object]:
    model = LoadPowerModel.for_host(
        cpu_name="Fixture", table_tdp_w=100.0, table_matched=True, threads=1, facts=SocketFacts(16, False), cpus=16
    )
    return {**model.describe(1.0, 1.0), **power_model_overrides}


def test_the_power_sources_width_per_source() -> None:
    """Stated figures (see the module docstring); printed with -s for the report."""

    def part(energy_figure: str = "carbontracker", cpu_source: str = "tdp_table", **overrides: object) -> Part:
        arguments: dict[str, object] = {"gpu_source": None, "power_model": None, "table_matched": True}
        arguments.update(overrides)
        return power_part(energy_figure=energy_figure, cpu_source=cpu_source, table_spread=lambda: (0.08, 3.16), **arguments)  # type: ignore[arg-type]

    load = "load_model"
    cases = {
        "simulated": part(cpu_source="simulated"),
        "rapl": part(cpu_source="rapl"),
        "rapl_counter": part("rapl_counter", "rapl"),
        "nvml + rapl": part(cpu_source="rapl", gpu_source="nvml"),
        "tdp_table (matched)": part(),
        "tdp_table (average)": part(table_matched=False),
        "load model, bare metal, table TDP": part(load, power_model=_load_model({})),
        "load model, bare metal, average TDP": part(load, power_model=_load_model({"tdp_source": "carbontracker_average"})),
        "load model, VM, table TDP": part(load, power_model=_load_model({"threads_source": "server_median"})),
        "load model, VM, unknown CPU": part(
            load, power_model=_load_model({"tdp_source": "server_median", "threads_source": "server_median"})
        ),
    }
    for name, part in cases.items():
        print(f"{name:40s} x{part.low:.3f} .. x{part.high:.3f}  (width {width(part):.2f})")
    assert (cases["simulated"].low, cases["simulated"].high) == (1.0, 1.0)
    assert (cases["rapl"].low, cases["rapl"].high) == (0.75, 1.35) == (cases["rapl_counter"].low, cases["rapl_counter"].high)
    assert (cases["nvml + rapl"].low, cases["nvml + rapl"].high) == (0.75, 1.35)  # the wider of the two components
    assert (cases["tdp_table (matched)"].low, cases["tdp_table (matched)"].high) == pytest.approx((0.24, 2.04))
    # a load model on a known, fully busy package: only the full-load power vs TDP, 0.7-1.3
    assert (cases["load model, bare metal, table TDP"].low, cases["load model, bare metal, table TDP"].high) == pytest.approx(
        (0.7, 1.3)
    )
    widths = [width(cases[name]) for name in ("simulated", "rapl", "load model, bare metal, table TDP", "tdp_table (matched)")]
    assert widths == sorted(widths)  # a counter is narrower than any table; the load model narrower than 50 % of TDP
    assert width(cases["tdp_table (average)"]) > width(cases["tdp_table (matched)"])
    assert width(cases["load model, VM, unknown CPU"]) > width(cases["load model, bare metal, table TDP"])
    for guessed in ("load model, VM, table TDP", "load model, bare metal, average TDP"):
        assert width(cases[guessed]) > width(cases["load model, bare metal, table TDP"])


def test_the_curves_shape_factor_is_one_at_full_load_and_widest_at_idle() -> None:
    assert curve_shape_factors(1.0) == (1.0, 1.0)
    idle, half = curve_shape_factors(0.0), curve_shape_factors(0.5)
    assert idle[1] / idle[0] > half[1] / half[0] > 1.0


def test_the_spread_is_the_95_percent_interval_of_the_mean_per_pass_energy_over_sub_windows() -> None:
    subs = [SubWindow(0.2, 0.2, 10), SubWindow(0.2, 0.2, 11), SubWindow(0.2, 0.2, 9), SubWindow(0.2, 0.2, 10)]
    part = spread_part(subs, None, per_pass=True)
    per_pass = [0.02, 0.2 / 11, 0.2 / 9, 0.02]
    mean = sum(per_pass) / 4
    sd = math.sqrt(sum((x - mean) ** 2 for x in per_pass) / 3)
    half = 3.182 * sd / 2 / mean
    assert (part.low, part.high) == pytest.approx((1 - half, 1 + half))
    steady = spread_part([SubWindow(0.2, 0.2, 10)] * 5, None, per_pass=True)
    assert (steady.low, steady.high) == (1.0, 1.0)
    assert spread_part(subs[:1], None, per_pass=True).high == 1.0  # one sub-window: not estimated, and says so
    assert "not estimated" in spread_part(subs[:1], None, per_pass=True).why


def test_only_the_load_model_lets_the_power_spread_over_the_window() -> None:
    subs = [SubWindow(0.2, 0.2, 10), SubWindow(0.2, 0.1, 10), SubWindow(0.2, 0.2, 10)]
    assert spread_part(subs, None, per_pass=False).high == 1.0
    model = LoadPowerModel.for_host(
        cpu_name="F", table_tdp_w=100.0, table_matched=True, threads=1, facts=SocketFacts(8, False), cpus=8
    )
    varying = spread_part(subs, lambda sub: model.power_w(sub.cpu_s, sub.duration_s), per_pass=False)
    assert varying.high > 1.0


def test_the_scaling_picks_its_spread() -> None:
    power, per_pass, power_spread = Part("power_source", 0.7, 1.3, ""), Part("w", 0.9, 1.1, ""), Part("w", 1, 1, "")
    uncertainty = EnergyUncertainty(power, per_pass, power_spread)
    assert uncertainty.parts("measured") == (power, per_pass)
    assert uncertainty.parts("hw_latency") == (power, power_spread) == uncertainty.parts("none")


def test_sub_window_marks_fall_on_pass_ends_and_a_long_pass_swallows_boundaries() -> None:
    cpu = iter(float(i) for i in range(100))
    marks = SubWindowMarks(0.0, 1.0, count=5, cpu_clock=lambda: next(cpu))
    for passes, now in enumerate((0.1, 0.25, 0.3, 0.9, 1.05), start=1):
        marks.pass_done(now, passes)
    subs = marks.close(1.05, 5)
    # boundaries at 0.2, 0.4, 0.6, 0.8: marked at 0.25 (pass 2) and 0.9 (pass 4: it spans 0.4-0.8)
    assert [(round(s.duration_s, 2), s.passes) for s in subs] == [(0.25, 2), (0.65, 2), (0.15, 1)]
