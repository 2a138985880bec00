"""Text normalisation, the IPA vocabulary and espeak-ng phonemization."""
import pytest

from dmospeech.data.text import Phonemizer, UnpronounceableText, Vocabulary, normalize_text, unpronounceable_characters
from tests.helpers import PROJECT_ROOT, params


@pytest.fixture(scope="module")
def vocab():
    return Vocabulary.load(PROJECT_ROOT / params().phonemize_text.vocab_path)


def test_normalize_text():
    assert normalize_text("  “Hello”\tworld –\u00a0it’s\x07 fine ") == "\"Hello\" world - it's fine"
    assert normalize_text("ﬁne") == "fine"  # NFKC ligature


def test_unpronounceable_characters():
    assert unpronounceable_characters("Café naïve, 3.50 $!") == []
    assert unpronounceable_characters("hi 😀 漢") == ["漢", "😀"]


def test_vocabulary_is_versioned_and_round_trips(vocab):
    assert vocab.version == "ipa-v1" and vocab.symbols[0] == "_" and len(set(vocab.symbols)) == len(vocab)
    ids = vocab.encode("ðə kˈæt.")
    assert "".join(vocab.symbols[i] for i in ids) == "ðə kˈæt."
    with pytest.raises(UnpronounceableText, match="not in vocabulary"):
        vocab.encode("ðə ☃")


def test_phonemizer_ipa_with_stress_and_punctuation(vocab):
    phon = Phonemizer(params().phonemize_text)
    out = phon(["The birch canoe slid on the smooth planks.", "Hello, world!"])
    assert out[0].startswith("ðə bˈɜːtʃ kənˈuː") and out[0].endswith(".")
    assert "," in out[1] and out[1].endswith("!") and "ˈ" in out[1]
    assert all(vocab.encode(o) for o in out)
    assert phon([]) == []
