import pytest

from harness.docassist.clean import trim_repetition


@pytest.mark.parametrize(
    "text",
    [
        "The authority delivered 18.6 billion litres. Leaks fell to 11.8%.",
        "1. What did the authority deliver?\n2. Why did leaks fall?\n"
        "3. Who is the general manager?",
        "Dr. Osei chaired the meeting. The board approved the new bell schedule.",
    ],
)
def test_well_formed_answers_are_unchanged(text):
    assert trim_repetition(text) == text


def test_phrase_loops_are_cut_to_one_pass():
    looped = "This document is about the supply chain, " + "supply chain, " * 40
    assert trim_repetition(looped) == "This document is about the supply chain."
    listing = (
        "The document gives the shipment details, including the "
        "temperature excursion, the number of pallets, the time, "
        + "the type of pallets, the number of pallets, "
        * 10
    )
    assert trim_repetition(listing) == (
        "The document gives the shipment details, including the "
        "temperature excursion, the number of pallets, the time."
    )


def test_repeated_paragraphs_and_a_cut_off_repeat_are_dropped():
    para = "The board approved the rollout of the new bell schedule for Millbrook High School."
    assert trim_repetition("\n\n".join([para] * 2 + [para[:40]])) == para
    assert (
        trim_repetition(f"{para}\n\nIt starts in August.\n\nThe board approved the rollout of the")
        == f"{para}\n\nIt starts in August."
    )


def test_an_unfinished_last_sentence_is_dropped_when_a_whole_one_remains():
    assert (
        trim_repetition("The authority delivered 18.6 billion litres. Leaks fell to")
        == "The authority delivered 18.6 billion litres."
    )
    assert trim_repetition("Leaks fell to") == "Leaks fell to"  # nothing whole to fall back on
