"""benchmarks/decoder_quality.py's second recogniser: PocketSphinx's packaged model reads real speech
(most of a LibriSpeech sentence), and recordings whose original gave no reference transcript are left
out of the WER instead of counting every hypothesis word as an insertion."""
import soundfile as sf

from dmospeech.evaluation.metrics import word_error_rate
from tests.helpers import load_benchmark


def test_pocketsphinx_reads_real_speech(dev_corpus):
    quality = load_benchmark("decoder_quality")
    folder = dev_corpus / "librispeech" / "39" / "121914"
    truth = (folder / "39-121914.trans.txt").read_text().splitlines()[0].split(" ", 1)[1].lower()
    audio, rate = sf.read(folder / "39-121914-0000.flac", dtype="float32")
    recognizer = quality.PocketSphinx()
    heard = recognizer(audio, rate)
    assert word_error_rate([heard], [truth]) < 0.5, heard


def test_recordings_without_a_reference_are_left_out():
    quality = load_benchmark("decoder_quality")
    wer, median, each = quality.corpus_and_median_wer(["a b c d", "x y", "anything"], ["a b c d", "x z", ""])
    assert wer == 1 / 6 and median == 0.25
    assert [(e[0], e[1]) for e in each] == [(0.0, 0), (0.5, 1)]
