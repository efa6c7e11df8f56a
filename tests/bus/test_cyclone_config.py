"""The node adds its interoperability fragment to the user's Cyclone configuration without losing it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cyclonedds.core import Policy

from carbon_node.bus.cyclone import (
    IGNORE_TYPE_INFORMATION_XML,
    NODE_NAME,
    BusError,
    configure_cyclone,
    create_participant,
    delete_entity,
    domain_id_from_env,
    merge_cyclone_uri,
)
from tests.conftest import LOOPBACK_CYCLONE_XML


@pytest.mark.parametrize(
    ("user_uri", "expected"),
    [
        (None, IGNORE_TYPE_INFORMATION_XML),
        ("", IGNORE_TYPE_INFORMATION_XML),
        ("file:///etc/cyclone.xml", f"file:///etc/cyclone.xml,{IGNORE_TYPE_INFORMATION_XML}"),
        ("<CycloneDDS/>", f"<CycloneDDS/>,{IGNORE_TYPE_INFORMATION_XML}"),
        ("a.xml,b.xml,", f"a.xml,b.xml,{IGNORE_TYPE_INFORMATION_XML}"),
        (f"a.xml,{IGNORE_TYPE_INFORMATION_XML}", f"a.xml,{IGNORE_TYPE_INFORMATION_XML}"),
    ],
)
def test_the_user_uri_is_kept_in_front_and_ours_appended_once(user_uri: str | None, expected: str) -> None:
    assert merge_cyclone_uri(user_uri) == expected


def test_the_fragment_sets_ignore_type_information_for_eprosima() -> None:
    assert "<Compatibility><IgnoreTypeInformation>1.15</IgnoreTypeInformation></Compatibility>" in IGNORE_TYPE_INFORMATION_XML


def test_configuring_twice_changes_the_environment_once() -> None:
    environ = {"CYCLONEDDS_URI": "user.xml"}
    first = configure_cyclone(environ)
    assert configure_cyclone(environ) == first == environ["CYCLONEDDS_URI"]
    assert environ["CYCLONEDDS_URI"].startswith("user.xml,")


def _traced_config(trace: Path) -> str:
    """The tests' loopback configuration plus a Cyclone trace of the effective configuration."""
    tracing = f"<Tracing><Verbosity>config</Verbosity><OutputFile>{trace}</OutputFile></Tracing>"
    return LOOPBACK_CYCLONE_XML.replace("</Domain>", tracing + "</Domain>")


@pytest.mark.parametrize("form", ["file", "inline"])
def test_cyclone_runs_with_the_user_configuration_and_our_fragment(
    form: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dds_domain: int
) -> None:
    trace = tmp_path / "cyclone.log"
    user_xml = _traced_config(trace)
    if form == "file":
        config = tmp_path / "cyclone.xml"
        config.write_text(user_xml)
        user_uri = f"file://{config}"
    else:
        user_uri = user_xml
    monkeypatch.setenv("CYCLONEDDS_URI", user_uri)
    participant = create_participant(dds_domain)
    try:
        assert os.environ["CYCLONEDDS_URI"] == f"{user_uri},{IGNORE_TYPE_INFORMATION_XML}"
        assert participant.get_qos()[Policy.EntityName] == Policy.EntityName(NODE_NAME)
    finally:
        delete_entity(participant)
    effective = trace.read_text()  # written only because the user's part was applied
    assert "Domain/Compatibility/IgnoreTypeInformation/#text: 1.15" in effective
    assert "127.0.0.1" in effective


def test_a_broken_user_configuration_is_reported_as_a_bus_error(monkeypatch: pytest.MonkeyPatch, dds_domain: int) -> None:
    broken = "<CycloneDDS><Domain Id='any'><NoSuchSetting/></Domain></CycloneDDS>"
    monkeypatch.setenv("CYCLONEDDS_URI", f"{LOOPBACK_CYCLONE_XML},{broken}")
    with pytest.raises(BusError, match="cannot create DDS participant"):
        create_participant(dds_domain)


@pytest.mark.parametrize(("raw", "expected"), [("", 0), ("7", 7), (" 12 ", 12), ("232", 232)])
def test_the_domain_id_is_read_as_upstream_does(raw: str, expected: int) -> None:
    assert domain_id_from_env({"SUSTAINML_DOMAIN_ID": raw}) == expected


@pytest.mark.parametrize("raw", ["x", "-1", "233", "1.5"])
def test_an_invalid_domain_id_is_an_error_naming_the_variable(raw: str) -> None:
    with pytest.raises(BusError, match=r"invalid SUSTAINML_DOMAIN_ID=.*0 to 232"):
        domain_id_from_env({"SUSTAINML_DOMAIN_ID": raw})
