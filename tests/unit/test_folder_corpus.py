"""The benchmarks' folder corpus: layouts are recognised and each split is cached on its own."""
from dataclasses import asdict

import torch

from dmospeech.ops.checkpoint import save_checkpoint
from dmospeech.codec.folder_corpus import build_folder_corpus, detect_source, items_below
from dmospeech.codec.model import Codec
from tests.helpers import codec_model, params, voiced, write

TEXTS = ["the cat sat on the mat", "a dog ran home", "she reads a book", "we walk to the park"]


def sidecar_folder(root, name, n, seed):
    for i in range(n):
        write(root / name / f"{name}_{i}.wav", voiced(1.0 + 0.2 * i, seed=seed + i, f0=120 + 20 * i))
        (root / name / f"{name}_{i}.txt").write_text(TEXTS[i % len(TEXTS)])
    return root / name


def tiny_codec(tmp_path):
    """A checkpoint of a small random codec (seed 0)."""
    torch.manual_seed(0)
    cfg = codec_model(encoder_dim=4, decoder_dim=16)
    return save_checkpoint(tmp_path / "codec", 1, {"codec.ema": Codec(cfg).state_dict()}, {"step": 1},
                           {"task": "codec", "model": asdict(cfg)}, 0)


def test_a_new_validation_folder_encodes_only_the_validation_split(tmp_path, capsys):
    p, codec_dir = params(), tiny_codec(tmp_path)
    train = sidecar_folder(tmp_path, "alice", 3, 0)
    first, second = sidecar_folder(tmp_path, "bob", 2, 10), sidecar_folder(tmp_path, "carol", 1, 20)
    assert detect_source(train).kind == "sidecar"
    work = tmp_path / "corpus"

    train_items, valid_items, stats = build_folder_corpus([train], [first], work, codec_dir, p)
    assert [len(train_items), len(valid_items)] == [3, 2] and {it.speaker for it in valid_items} == {"bob"}
    capsys.readouterr()
    again_train, other_valid, again_stats = build_folder_corpus([train], [second], work, codec_dir, p)
    out = capsys.readouterr().out
    assert out.count("reusing") == 1 and "1 valid items" in out  # train reused, only carol encoded
    assert again_train == train_items and again_stats == stats
    assert [it.speaker for it in other_valid] == ["carol"]
    _, back, _ = build_folder_corpus([train], [first], work, codec_dir, p)
    assert back == valid_items and capsys.readouterr().out.count("reusing") == 2


def librispeech_folder(root, speakers, seed):
    for n, spk in enumerate(speakers):
        chapter = root / spk / "1"
        write(chapter / f"{spk}-1-0000.flac", voiced(1.2, seed=seed + n, f0=110 + 15 * n))
        (chapter / f"{spk}-1.trans.txt").write_text(f"{spk}-1-0000 {TEXTS[n % len(TEXTS)].upper()}\n")
    return root


def test_validation_groups_select_their_items_whatever_the_layout(tmp_path):
    """learn_asr.py's groups: a LibriSpeech folder of several speakers (whose items carry the speakers'
    ids, not the folder's name) selects all of its items, a one-speaker folder its own."""
    p, codec_dir = params(), tiny_codec(tmp_path)
    train = sidecar_folder(tmp_path, "alice", 2, 0)
    unseen = librispeech_folder(tmp_path / "librispeech", ["19", "20"], 30)
    kept = sidecar_folder(tmp_path, "bob", 1, 10)
    # judge_codec.py's groups share a folder: [unseen] and [kept, unseen]; each recording is encoded once
    _, valid_items, _ = build_folder_corpus([train], [unseen, kept, unseen], tmp_path / "corpus", codec_dir, p)
    assert sorted(it.speaker for it in valid_items) == ["19", "20", "bob"]
    exts = tuple(p.prepare_corpus.audio_extensions)
    assert sorted(it.speaker for it in items_below(valid_items, [unseen], exts)) == ["19", "20"]
    assert [it.speaker for it in items_below(valid_items, [kept], exts)] == ["bob"]
    assert items_below(valid_items, [train], exts) == []
