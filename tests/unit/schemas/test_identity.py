"""GB 11643 resident ID numbers: validated, hashed under a key, never shown in clear."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from schemas.identity import (
    InvalidName,
    InvalidResidentId,
    PublicName,
    check_char,
    household_ref,
    is_valid_resident_id,
    mask_id,
    mask_name,
    person_ref,
    public_name,
    scrub_ids,
    validate_resident_id,
)
from tests.unit.schemas.factories import KEY, make_id

TODAY = date(2025, 1, 1)

regions = st.integers(min_value=1, max_value=999_999).map(lambda n: f"{n:06d}")
births = st.dates(min_value=date(1900, 1, 1), max_value=TODAY)
seqs = st.integers(min_value=0, max_value=999).map(lambda n: f"{n:03d}")
valid_ids = st.builds(make_id, regions, births, seqs)


def test_a_published_example_number_is_valid() -> None:
    # The GB 11643 worked example: 11010519491231002X
    assert validate_resident_id("11010519491231002x", today=TODAY) == "11010519491231002X"
    assert check_char("11010519491231002") == "X"


@given(valid_ids)
def test_valid_numbers_round_trip(id_number: str) -> None:
    assert validate_resident_id(id_number, today=TODAY) == id_number
    assert validate_resident_id(f"  {id_number.lower()} ", today=TODAY) == id_number


@given(valid_ids, st.integers(min_value=0, max_value=17), st.integers(min_value=1, max_value=10))
def test_any_single_corrupted_character_is_caught(id_number: str, pos: int, shift: int) -> None:
    alphabet = "0123456789X" if pos == 17 else "0123456789"
    current = alphabet.index(id_number[pos])
    replacement = alphabet[(current + shift) % len(alphabet)]
    if replacement == id_number[pos]:
        return
    corrupted = id_number[:pos] + replacement + id_number[pos + 1 :]
    with pytest.raises(InvalidResidentId) as err:
        validate_resident_id(corrupted, today=TODAY)
    assert corrupted not in str(err.value)
    assert id_number not in str(err.value)


@given(valid_ids, st.integers(min_value=0, max_value=16))
def test_swapping_neighbours_is_caught_when_they_differ(id_number: str, pos: int) -> None:
    a, b = id_number[pos], id_number[pos + 1]
    if a == b:
        return
    swapped = id_number[:pos] + b + a + id_number[pos + 2 :]
    assert not is_valid_resident_id(swapped, today=TODAY)


@pytest.mark.parametrize(
    ("number", "why"),
    [
        (make_id()[:-1], "characters"),
        (make_id() + "1", "characters"),
        ("37032119800517A23" + "4", "digits"),
        (make_id(region="000000"), "region"),
        ("370321" + "19800230" + "123" + "X", "date of birth"),
        (make_id(born=date(2030, 1, 1)), "date of birth"),
        (make_id(born=date(1899, 12, 31)), "date of birth"),
    ],
)
def test_bad_numbers_say_why_and_mask_the_number(number: str, why: str) -> None:
    with pytest.raises(InvalidResidentId) as err:
        validate_resident_id(number, today=TODAY)
    assert why in str(err.value)
    assert number not in str(err.value)
    assert number[6:14] not in str(err.value)  # not even the date of birth


def test_masks() -> None:
    assert mask_id("11010519491231002X") == "110*************2X"
    assert mask_id("123") == "***"
    assert mask_name("张三丰") == "张**"
    assert mask_name("李四") == "李*"
    assert mask_name("王") == "*"
    assert scrub_ids('{"id":"11010519491231002X"}') == '{"id":"110*************2X"}'


@given(valid_ids)
def test_refs_are_keyed_hashes_of_the_right_shape(id_number: str) -> None:
    p, h = person_ref(id_number, KEY), household_ref(id_number, KEY)
    assert p.startswith("p_") and len(p) == 34
    assert h.startswith("h_") and len(h) == 34
    assert p[2:] != h[2:]  # a person's and a household's refs never coincide
    assert person_ref(id_number.lower(), KEY) == p  # normalised first
    assert person_ref(id_number, KEY + b"!") != p  # keyed: another key, another ref
    assert id_number not in p + h


def test_a_short_key_is_refused_and_a_bad_number_is_never_hashed() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        person_ref(make_id(), b"short")
    with pytest.raises(InvalidResidentId):
        household_ref("110105194912310021", KEY)


def test_a_public_name_keeps_the_first_character_and_stars_the_rest() -> None:
    assert public_name("张三丰") == "张＊＊"
    assert public_name("李四") == "李＊"
    assert public_name(" 欧阳 娜娜 ") == "欧＊＊＊"
    assert public_name("买买提·艾力") == "买＊＊＊＊＊"


@pytest.mark.parametrize(
    "text", ["王", "", "张3", "11010519491231002X", "·张三", "张@三", "张" * 31]
)
def test_what_is_not_a_name_is_refused_without_repeating_it(text: str) -> None:
    with pytest.raises(InvalidName) as caught:
        public_name(text)
    assert text.strip() == "" or text not in str(caught.value)


@pytest.mark.parametrize("masked", ["张三", "张**", "＊＊", "张＊三", "张", "1＊"])
def test_a_record_takes_only_a_masked_name(masked: str) -> None:
    with pytest.raises(ValidationError):
        TypeAdapter(PublicName).validate_python(masked)
    TypeAdapter(PublicName).validate_python("张＊＊")
