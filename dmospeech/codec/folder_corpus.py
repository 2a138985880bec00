"""Latent + phoneme items from plain corpus folders, for the learning benchmarks (`benchmarks/learn_*.py`)
that take `--train DIR... --valid DIR...` instead of a DVC workspace.

Each folder's layout is recognised (`detect_source`), its transcribed files are conditioned to 48 kHz
(resample_audio settings), phonemized (phonemize_text settings) and encoded by a codec checkpoint
(encode_latents settings) into shards below `work_dir`. Each split is cached on its own, in
`work_dir/<split>-<key>` (the key hashes the files, codec and settings), so a run with the same training
folders and other validation folders encodes only the new validation files. Files that cannot be used
are listed, not fatal.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Sequence

from dmospeech.ops.atomic import write_json_atomic
from dmospeech.ops.audio import AudioError, write_audio_atomic
from dmospeech.ops.files import files_below, iter_files_below
from dmospeech.config import Params, SourceConfig
from dmospeech.data.datasets import Clip
from dmospeech.codec.latent_text import LatentTextItem
from dmospeech.codec.latents import LatentStats, encode_segments
from dmospeech.data.manifest import Lineage
from dmospeech.data.resample import condition_file
from dmospeech.data.sources import SourceItem, scan_source
from dmospeech.codec.model import Codec
from dmospeech.data.text import Phonemizer, UnpronounceableText, Vocabulary, normalize_text

CACHE_VERSION = 2


def detect_source(folder: Path) -> SourceConfig:
    """The source layout of a folder: metadata.csv -> ljspeech, *.trans.txt -> librispeech,
    manifest.csv -> csv, .txt next to the audio -> sidecar, else untranscribed long-form."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    if (folder / "metadata.csv").exists():
        return SourceConfig(folder.name, "ljspeech", str(folder), folder.name)
    speakers = {p.name.split("-")[0] for p in files_below(folder, "*.trans.txt")}  # <speaker>-<chapter>.trans.txt
    if speakers:  # a corpus root, or one speaker's folder (then named after that speaker)
        return SourceConfig(folder.name, "librispeech", str(folder), speakers.pop() if len(speakers) == 1 else None)
    if (folder / "manifest.csv").exists():
        return SourceConfig(folder.name, "csv", str(folder / "manifest.csv"))
    if next(iter_files_below(folder, "*.txt"), None) is not None:
        return SourceConfig(folder.name, "sidecar", str(folder), folder.name)
    return SourceConfig(folder.name, "longform", str(folder))


def scan_folders(folders: Sequence[Path], extensions: tuple[str, ...]) -> list[SourceItem]:
    """The recordings below `folders`, each once: a folder named twice (two validation groups that share
    one) or inside another named folder adds none again."""
    items = {}
    for folder in folders:
        for item in scan_source(detect_source(Path(folder)), extensions, Path("/")):
            items.setdefault(item.path.resolve(), item)
    return list(items.values())


def _cache_key(items: Sequence[SourceItem], codec_checkpoint: Path, params: Params, max_seconds: float) -> str:
    files = [(str(it.path), it.path.stat().st_size if it.path.exists() else -1, it.speaker, it.text) for it in items]
    codec_files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in Path(codec_checkpoint).iterdir())
    blob = json.dumps([CACHE_VERSION, files, str(Path(codec_checkpoint).resolve()), codec_files, max_seconds,
                       asdict(params.resample_audio), asdict(params.phonemize_text), asdict(params.encode_latents)],
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _clip_id(item: SourceItem) -> str:
    return f"{hashlib.sha256(str(item.path).encode()).hexdigest()[:12]}_{item.path.stem}"


def items_below(items: Sequence[LatentTextItem], folders: Sequence[Path], extensions: tuple[str, ...]
                ) -> list[LatentTextItem]:
    """The corpus items whose source file lies below `folders` (one validation group, say), matched by
    clip id: a folder of many speakers selects all of them."""
    wanted = {_clip_id(item) for item in scan_folders(folders, extensions)}
    return [it for it in items if it.segment_id in wanted]


def build_split(folders: Sequence[Path], split: str, work_dir: Path, subdir: str, codec: Codec,
                codec_checkpoint: Path, params: Params, max_seconds: float
                ) -> tuple[list[LatentTextItem], LatentStats, list[str]]:
    """Condition, phonemize and encode every transcribed file of `folders` as `split` items.
    Returns (items, latent stats of this split, skipped-file messages); shards go to work_dir/subdir."""
    vocab = Vocabulary.load(params.phonemize_text.vocab_path)
    phonemizer = Phonemizer(params.phonemize_text)
    skipped, kept = [], []
    for item in scan_folders(folders, tuple(params.prepare_corpus.audio_extensions)):
        if item.problem or not item.transcribed:
            skipped.append(f"{item.path}: {item.problem or 'untranscribed'}")
            continue
        try:
            audio, info = condition_file(str(item.path), params.resample_audio)
        except AudioError as err:
            skipped.append(f"{item.path}: {err}")
            continue
        if info["duration_s"] > max_seconds:
            skipped.append(f"{item.path}: {info['duration_s']:.1f} s > {max_seconds} s")
            continue
        path = work_dir / "audio" / subdir / f"{_clip_id(item)}.flac"
        write_audio_atomic(path, audio, params.resample_audio.sample_rate)
        kept.append((item, Clip(_clip_id(item), str(path), 0.0, info["duration_s"])))
    texts = [normalize_text(item.text) for item, _ in kept]
    ids = {}
    for (item, clip), ipa in zip(kept, phonemizer(texts)):
        try:
            ids[clip.clip_id] = tuple(vocab.encode(ipa))
        except UnpronounceableText as err:
            skipped.append(f"{item.path}: {err}")
    kept = [(item, clip) for item, clip in kept if ids.get(clip.clip_id)]
    if not kept:
        raise ValueError(f"no usable transcribed audio in {[str(f) for f in folders]} ({len(skipped)} skipped)")
    cfg = replace(params.encode_latents, stats_path=str(work_dir / subdir / "stats.json"))
    sha = {clip.clip_id: hashlib.sha256(Path(item.path).read_bytes()).hexdigest() for item, clip in kept}
    table, stats = encode_segments(codec, [clip for _, clip in kept], cfg, Lineage.for_stage("folder_corpus", cfg),
                                   work_dir / subdir, params.resample_audio.sample_rate,
                                   codec_checkpoint=str(codec_checkpoint), source_sha256=sha)
    rows = {r.segment_id: r for r in table.itertuples(index=False)}
    items = [LatentTextItem(clip.clip_id, item.speaker, split, ids[clip.clip_id], f"{subdir}/{rows[clip.clip_id].shard}",
                            int(rows[clip.clip_id].frame_offset), int(rows[clip.clip_id].num_frames), clip.path,
                            0.0, clip.end_s, sha[clip.clip_id]) for item, clip in kept]
    return items, stats, skipped


def build_folder_corpus(train: Sequence[Path], valid: Sequence[Path], work_dir: Path, codec_checkpoint: Path,
                        params: Params, max_seconds: float = 30.0
                        ) -> tuple[list[LatentTextItem], list[LatentTextItem], LatentStats]:
    """(train items, valid items, train latent stats); shards below `work_dir` (a `LatentStore` root).
    Each split is reused from `work_dir/<split>-<key>/items.json` when its files, the codec and the
    settings are unchanged."""
    work_dir = Path(work_dir)
    codec, splits = None, {}
    for split, folders in (("train", train), ("valid", valid)):
        scanned = scan_folders(folders, tuple(params.prepare_corpus.audio_extensions))
        subdir = f"{split}-{_cache_key(scanned, codec_checkpoint, params, max_seconds)}"
        index = work_dir / subdir / "items.json"
        if index.exists():
            print(f"folder corpus: reusing {index}")
            items = [LatentTextItem.from_dict(it) for it in json.loads(index.read_text())]
        else:
            codec = codec or Codec.from_checkpoint(codec_checkpoint).eval()
            items, _, skipped = build_split(folders, split, work_dir, subdir, codec, codec_checkpoint, params,
                                            max_seconds)
            for line in skipped:
                print(f"skipped {line}")
            write_json_atomic(index, [asdict(it) for it in items], indent=None, nonfinite="error")
            print(f"folder corpus: {len(items)} {split} items in {work_dir / subdir}")
        splits[split] = (items, LatentStats.load(work_dir / subdir / "stats.json"))
    return splits["train"][0], splits["valid"][0], splits["train"][1]
