"""INS form (13 characters -- digits, or 2A/2B for Corsica -- then a 2-digit key) and key
(97 - number mod 97, Corsica's 2A/2B counting as 19/18)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vault.errors import InvalidResource
from vault.fhir.ins import check_ins, is_well_formed, key_is_valid

INS_NIR = "urn:oid:1.2.250.1.213.1.4.8"
INS_TEST = "urn:oid:1.2.250.1.213.1.4.10"
DIGITS = "0123456789"


def with_key(body: str) -> str:
    number = int(
        body.replace("2A", "19", 1).replace("2B", "18", 1) if body[5:7] in ("2A", "2B") else body
    )
    return f"{body}{97 - number % 97:02d}"


@st.composite
def bodies(draw: st.DrawFn) -> str:
    """The 13 characters before the key, Corsican departments included."""
    head = draw(st.text(alphabet=DIGITS, min_size=5, max_size=5))
    department = draw(
        st.one_of(st.text(alphabet=DIGITS, min_size=2, max_size=2), st.sampled_from(["2A", "2B"]))
    )
    tail = draw(st.text(alphabet=DIGITS, min_size=6, max_size=6))
    return head + department + tail


@given(bodies())
def test_an_ins_with_its_computed_key_is_accepted_with_key_checking_on(body: str) -> None:
    value = with_key(body)
    assert is_well_formed(value)
    assert key_is_valid(value)
    assert check_ins(INS_NIR, value, check_key=True, expression="x") == value


@given(bodies(), st.integers(min_value=0, max_value=99))
def test_a_wrong_key_is_refused_only_when_key_checking_is_on(body: str, key: int) -> None:
    value = f"{body}{key:02d}"
    if value == with_key(body):
        return
    assert check_ins(INS_TEST, value, check_key=False, expression="x") == value
    with pytest.raises(InvalidResource, match="key"):
        check_ins(INS_TEST, value, check_key=True, expression="x")


@given(bodies(), st.integers(min_value=0, max_value=12), st.sampled_from(DIGITS))
def test_the_key_detects_any_single_changed_digit(body: str, position: int, digit: str) -> None:
    value = with_key(body)
    if (
        not value[position].isdigit()
        or value[position] == digit
        or (5 <= position <= 6 and body[5:7] in ("2A", "2B"))
    ):
        return
    changed = value[:position] + digit + value[position + 1 :]
    assert not key_is_valid(changed)


@given(st.text(max_size=20))
def test_anything_not_of_the_form_is_refused_whatever_the_key_setting(value: str) -> None:
    shaped = (
        len(value) == 15
        and value.isascii()
        and value[:5].isdigit()
        and (value[5:7].isdigit() or value[5:7] in ("2A", "2B"))
        and value[7:].isdigit()
    )
    assert is_well_formed(value) == shaped
    if not shaped:
        for check_key in (False, True):
            with pytest.raises(InvalidResource, match="13 characters"):
                check_ins(INS_NIR, value, check_key=check_key, expression="x")


@pytest.mark.parametrize(
    "value",
    [
        "18901751234567",
        "1890175123456789",
        "1 89 07 51 234 567 89",
        "18907 2C12345678",
        "189072a12345678",
        "\uff11" * 15,  # full-width digits are digits to str.isdigit()
    ],
)
def test_malformed_ins_are_refused(value: str) -> None:
    with pytest.raises(InvalidResource, match="13 characters") as raised:
        check_ins(INS_NIR, value, check_key=False, expression="Patient.identifier[0]")
    assert raised.value.expression == "Patient.identifier[0]"


def test_corsican_departments_count_as_19_and_18_in_the_key() -> None:
    assert key_is_valid("185032A123456" + f"{97 - 1850319123456 % 97:02d}")
    assert key_is_valid("185032B123456" + f"{97 - 1850318123456 % 97:02d}")
    assert not key_is_valid("185032A123456" + f"{97 - 1850318123456 % 97:02d}")


def test_only_ins_systems_are_ins() -> None:
    with pytest.raises(InvalidResource, match="Not an INS"):
        check_ins(
            "http://example.org/patients",
            with_key("1850375123456"),
            check_key=False,
            expression="x",
        )
