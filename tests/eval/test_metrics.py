import pytest

from harness.errors import UserError
from harness.eval import metrics


def test_bleu_identical_is_one_and_disjoint_is_zero():
    ref = "The authority delivered 18.6 billion litres of treated water in fiscal year 2023."
    assert metrics.corpus_bleu([ref], [ref]) == pytest.approx(1.0)
    assert metrics.sentence_bleu(ref, [ref]) == pytest.approx(1.0)
    assert metrics.corpus_bleu(["zebra quantum violin"], [ref]) == pytest.approx(0.0)
    partial = metrics.sentence_bleu("The authority delivered 18.6 billion litres of water.", [ref])
    assert 0.0 < partial < 1.0


def test_rouge_on_known_overlap():
    # reference 6 unigrams, output 3 of them: P=1, R=0.5, F1=2/3; bigrams 2 of 5: P=1, R=0.4, F1=4/7
    scores = metrics.rouge("the cat sat", "the cat sat on the mat")
    assert scores["rouge1"] == pytest.approx(2 / 3)
    assert scores["rouge2"] == pytest.approx(4 / 7)
    assert scores["rougeL"] == pytest.approx(2 / 3)
    assert metrics.rouge("pumps failed", "pumps failed")["rougeL"] == pytest.approx(1.0)
    # Porter stemming
    assert metrics.rouge("cats running", "cat runs")["rouge1"] == pytest.approx(1.0)


def test_self_bleu_is_high_for_repeats_low_for_varied_text():
    same = ["What is the budget for the project?"] * 3
    varied = [
        "What is the budget?",
        "Who approved the new pumps last winter?",
        "When does maintenance start in March?",
    ]
    assert metrics.self_bleu(same) == pytest.approx(1.0)
    assert metrics.self_bleu(varied) < 0.3
    assert metrics.self_bleu(["only one"]) is None


def test_sts_ranks_paraphrases_above_unrelated_sentences():
    encoder = metrics.sentence_encoder()
    sims = encoder.similarity(
        [
            "The reservoir supplied most of the town's water.",
            "The reservoir supplied most of the town's water.",
            "",
        ],
        [
            "Most of the town's water came from the reservoir.",
            "The football match ended in a draw.",
            "anything",
        ],
    )
    assert sims[0] > 0.8
    assert sims[1] < 0.3
    assert sims[0] > sims[1]
    assert sims[2] == 0.0  # an empty answer earns nothing
    emb = encoder.encode(["one sentence"])
    assert tuple(emb.shape) == (1, 384)


@pytest.mark.parametrize(
    ("task", "output", "question", "expected"),
    [
        (
            "qs",
            "1. What did the authority deliver?\n"
            "2. How much water was lost?\n3. Who is the manager?",
            None,
            True,
        ),
        (
            "qs",
            "Here are three questions:\n- Why did demand fall?\n"
            "- What is non-revenue water?\n- How much was invested?",
            None,
            True,
        ),
        ("qs", "What did the authority deliver? How much water was lost?", None, False),
        ("qs", "The authority delivered 18.6 billion litres of water.", None, False),
        ("qs", "1. What?\n2. Why?\n3. Who?\n4. When?", None, False),
        (
            "summ",
            "The authority delivered less water, cut leaks to 11.8% and invested $23.9 million.",
            None,
            True,
        ),
        (
            "summ",
            "1. What did the authority deliver?\n"
            "2. How much water was lost?\n3. Who is the manager?",
            None,
            False,
        ),
        ("summ", "Water.", None, False),
        ("summ", "#### Description " * 30, None, False),
        ("summ", "| | | | | | |\n|---|---|", None, False),
        ("qa", "|\n\n\n|\n|", "How much water was delivered?", False),
        ("qa", "February.", "When does maintenance start?", True),
        ("qs", "1. ?\n2. ??\n3. What is it?", None, False),
        (
            "qa",
            "It is about the supply chain, " + "supply chain, " * 30,
            "What is it about?",
            False,
        ),
        ("summ", "", None, False),
        ("qa", "It delivered 18.6 billion litres.", "How much water was delivered?", True),
        ("qa", "How much water was delivered?", "How much water was delivered?", False),
        ("qa", "What was delivered? Who delivered it?", "How much water was delivered?", False),
        ("qa", "   ", "How much water was delivered?", False),
    ],
)
def test_intent_accuracy_on_hand_written_outputs(task, output, question, expected):
    assert metrics.intent_ok(task, output, question) is expected


def test_unknown_task_is_a_user_error():
    with pytest.raises(UserError, match="unknown task"):
        metrics.intent_ok("translate", "text")
