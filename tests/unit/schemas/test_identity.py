"""GB 11643 resident ID numbers: validated, hashed under a key, never shown in clear."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from schemas.identity import (
    MAX_NAME_CHARS,
    MIN_KEY_BYTES,
    HouseholdRef,
    InvalidName,
    InvalidResidentId,
    PersonRef,
    PublicName,
    check_char,
    household_ref,
    is_valid_resident_id,
    mask_id,
    mask_name,
    person_ref,
    public_name,
    scrub_ids,
    scrub_personal,
    statement_ref,
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


def test_a_name_of_thirty_characters_is_the_longest_published() -> None:
    # P7: the longest name taken (spaces aside) is 30 characters, one more is refused
    assert public_name("买" * MAX_NAME_CHARS) == "买" + "＊" * (MAX_NAME_CHARS - 1)
    assert MAX_NAME_CHARS == 30
    with pytest.raises(InvalidName):
        public_name("买" * (MAX_NAME_CHARS + 1))


@pytest.mark.parametrize("digits", ["０１２３４５６７８９", "٠١٢٣٤٥٦٧٨٩", "०१२३४५६७८९"])
def test_an_id_number_in_another_scripts_digits_is_refused(digits: str) -> None:
    """A resident ID is ASCII digits (and X): full-width, Arabic-Indic or Devanagari
    digits read as numbers by Python are no ID number, even when their values would
    check."""
    valid = make_id()
    other = "".join(digits[int(c)] if c.isdigit() else c for c in valid)
    assert other != valid and is_valid_resident_id(valid)
    assert not is_valid_resident_id(other)


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


def test_a_child_born_today_has_a_valid_number_and_tomorrow_does_not() -> None:
    # the date of birth may be any day from 1900-01-01 up to and including `today`
    assert is_valid_resident_id(make_id(born=TODAY), today=TODAY)
    assert is_valid_resident_id(make_id(born=date(1900, 1, 1)), today=TODAY)
    assert not is_valid_resident_id(make_id(born=date(2025, 1, 2)), today=TODAY)


@pytest.mark.parametrize(
    "first17",
    [
        "1101051949123100",  # 16 digits
        "110105194912310021",  # 18 digits
        "1101051949123100X",  # a letter among the 17
        "１１０１０５１９４９１２３１００２",  # 17 full-width digits
    ],
)
def test_the_check_character_needs_exactly_17_ascii_digits(first17: str) -> None:
    with pytest.raises(InvalidResidentId, match="exactly 17 digits"):
        check_char(first17)


@given(valid_ids)
def test_refs_fit_the_record_fields_that_carry_them(id_number: str) -> None:
    # P7, P10: a record carries the keyed hash, never the number; its field takes the ref
    assert TypeAdapter(PersonRef).validate_python(person_ref(id_number, KEY))
    assert TypeAdapter(HouseholdRef).validate_python(household_ref(id_number, KEY))
    with pytest.raises(ValidationError):
        TypeAdapter(HouseholdRef).validate_python(person_ref(id_number, KEY))


def test_the_shortest_key_allowed_is_16_bytes() -> None:
    key = b"k" * MIN_KEY_BYTES
    assert MIN_KEY_BYTES == 16
    assert person_ref(make_id(), key).startswith("p_")
    assert statement_ref("张某, 河南省周口市人", key).startswith("h_")
    for short in (key[:-1], b""):
        with pytest.raises(ValueError, match="at least 16 bytes"):
            person_ref(make_id(), short)
        with pytest.raises(ValueError, match="at least 16 bytes"):
            statement_ref("张某, 河南省周口市人", short)


def test_a_vagrants_statement_gives_one_household_ref_and_never_shows_itself() -> None:
    # R7 + P6: the same statement (case and spaces aside) is the same household; another
    # statement or another key is another household; the statement is not in the ref
    statement = "Zhang Mou,  from Zhoukou, Henan"
    ref = statement_ref(statement, KEY)
    assert TypeAdapter(HouseholdRef).validate_python(ref) == ref
    assert statement_ref(" zhang mou, FROM Zhoukou, Henan ", KEY) == ref
    assert statement_ref("Li Mou, from Zhoukou, Henan", KEY) != ref
    for blank in ("", " ", "\t\n\u3000"):
        with pytest.raises(ValueError, match="blank identity statement"):
            statement_ref(blank, KEY)
    assert statement_ref(statement, KEY + b"!") != ref
    assert "Zhang" not in ref


def test_free_text_loses_old_ids_and_phone_numbers_but_keeps_the_rest() -> None:
    # P7, P10: what a clerk types by habit into a reason never reaches the log in clear
    old_id = "370321800517123"  # a first-generation, 15-digit number
    text = f"房屋倒塌, 旧身份证 {old_id}, 电话 138 0013 8000 或 0533-7123456"
    scrubbed = scrub_personal(text)
    assert old_id not in scrubbed
    assert "370**********23" in scrubbed
    assert "138 0013 8000" not in scrubbed and "7123456" not in scrubbed
    assert scrubbed.startswith("房屋倒塌, 旧身份证 370")
    assert scrub_personal(scrubbed) == scrubbed


def test_a_refused_name_says_which_character_is_wrong() -> None:
    # a clear error says what was wrong and where (and never repeats the name)
    with pytest.raises(InvalidName, match="character 2 is a character that is not a letter"):
        public_name("张@三")
    with pytest.raises(InvalidName, match="character 3 is a digit"):
        public_name("张三3")


def test_a_short_text_is_masked_with_its_first_three_and_last_two_characters() -> None:
    assert mask_id("123456") == "123*56"
    assert mask_id("12345") == "*****"
    assert mask_name(" ") == mask_id("") == ""  # nothing to show, and no error on nothing
