"""doctor's place-data check: the node's own resolver loads and reads a place."""

from __future__ import annotations

from carbon_node.service.doctor import Report, _check_places


def test_doctor_reports_the_place_data_and_reads_california_with_it() -> None:
    report = Report()
    _check_places(report)
    (check,) = report.checks
    assert (check.section, check.name, check.status) == ("intensity", "places", "ok")
    assert "US-CA" in check.detail and "codecarbon 3.3.2" in check.detail and "pycountry" in check.detail
    assert check.data["cities"] > 30000
