"""Segment edges by frame energy (paper sec 4.3: WhisperX cut ~10 % of the teacher's sentence endings
inside speech): trimming to the sound, the quietest point of a pause, the cut-off check, and where
long-form pieces start and end between the speech regions.

The cut-off check's energy tests are relative to the noise floor around the segment as well as to its
loudest frame, so steady noise at an edge is not taken for speech whatever its level (issue 25: with a
threshold re the loudest frame only, 26 % of noisy read speech was flagged). `benchmarks/cutoff_snr.py`
measures the flag rates on clean, noisy and mid-word-cut dev clips.

Given-text clips also have Whisper's last word (`LastWord`): a word the recording stops in is heard as
another word or not at all, and a correct last word heard shows that the VAD's speech score at the end
was the noise or the word's own decay (the README gives the flag rates with and without it). A clip that
starts inside another word's tail or a burst of noise with a pause after it starts at that pause when
Whisper hears the text's first word there (`leading_fragment_end`, `first_word_matches`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import jellyfish
import jiwer
import numpy as np

from dmospeech.config import CutoffConfig
from dmospeech.data.transcribe import normalize_for_wer

FRAME_S, HOP_S = 0.025, 0.010   # energy frames
SILENCE_FLOOR_DB = -100.0       # frames below this are digital silence, whatever the loudest frame
QUIET_TOLERANCE_DB = 6.0        # frames this close to a pause's quietest frame count as equally quiet
FLOOR_CONTEXT_S = 5.0           # the noise floor is measured over the segment and this much around it
MIN_PAUSE_FRAMES = 3            # a pause after a leading fragment: 3 frames, 45 ms, of no speech

Span = tuple[float, float]      # (start_s, end_s)


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    text: str                   # as the recogniser spells it, with its leading space


@dataclass(frozen=True)
class LastWord:
    """The last word Whisper hears in a given-text clip against the text's own, both normalised as WER
    compares them; `gap_s`: seconds from its end to the clip's end (None when nothing is heard);
    `matches`: the same word, or the same spelt another way (see last_word)."""
    heard: str
    given: str
    gap_s: float | None
    matches: bool


def last_word(words: Sequence[Word], text: str, duration_s: float, max_cer: float = 0.0,
              max_text_cer: float = float("inf"), spoken: Sequence[Word] | None = None) -> LastWord | None:
    """`LastWord` of the clip whose recognised `words` (times from the clip start) and given `text` these are,
    the last word taken from `spoken` (the words without those heard over no speech; default `words`);
    None when Whisper's whole transcript is further than `max_text_cer` (CER) from the text: a decode that
    loops ("son, son, son ...") or heard other words says nothing about where the text's last word is."""
    heard, given = normalize_for_wer("".join(w.text for w in words)).split(), normalize_for_wer(text).split()
    if heard and given and jiwer.cer(" ".join(given), " ".join(heard)) > max_text_cer:
        return None
    if spoken is not None:
        words, heard = spoken, normalize_for_wer("".join(w.text for w in spoken)).split()
    matches = bool(heard) and bool(given) and any(
        same_word("".join(given[-j:]), "".join(heard[-k:]), max_cer) for j in range(1, 5) for k in range(1, 5)
        if j == k == 1 or abs(len("".join(given[-j:])) - len("".join(heard[-k:]))) <= 1)
    return LastWord(heard[-1] if heard else "", given[-1] if given else "",
                    duration_s - words[-1].end if words else None, matches)


def first_word_matches(words: Sequence[Word], text: str, max_cer: float) -> bool:
    """Does Whisper hear the text's first word first? `same_word` with a word heard as its own ending taken
    for a word cut at its start; up to four words on each side joined must be the same in letters or in
    sound (there for for therefore), not only close: 'you could feel' is not 'he could feel'."""
    heard, given = normalize_for_wer("".join(w.text for w in words)).split(), normalize_for_wer(text).split()
    if not (heard and given):
        return False
    if same_word(given[0], heard[0], max_cer, cut_at="start"):
        return True
    joined = [("".join(given[:j]), "".join(heard[:k])) for j in range(1, 5) for k in range(1, 5) if j + k > 2]
    return any(g == h or jellyfish.metaphone(g) == jellyfish.metaphone(h) for g, h in joined)


def same_word(given: str, heard: str, max_cer: float, cut_at: str = "end") -> bool:
    """Is `heard` the word `given`? Equal, or (`max_cer` > 0) spelt another way: equal in sound (metaphone
    keys: chauffeur for schoeffer, there for for therefore, regretted for regret it), or within `max_cer`
    (CER) in letters or in sound, unless it is the given word's beginning (`cut_at` "end"; its ending for
    "start") in letters or in sound, when only the same sound counts: Whisper spells names its own way
    (whitmore for whittemore), and hears a word cut short as the part left (development for developments,
    elopments for developments). Words of several are compared joined (ABCs for "A B C's")."""
    if heard == given:
        return True
    if max_cer <= 0:
        return False
    in_letters = given.startswith(heard) if cut_at == "end" else given.endswith(heard)
    for g, h in ((given, heard), (jellyfish.metaphone(given), jellyfish.metaphone(heard))):
        part = in_letters or (g.startswith(h) if cut_at == "end" else g.endswith(h))
        if g and h and (g == h or (not part and jiwer.cer(g, h) <= max_cer)):
            return True
    return False


def frame_geometry(sr: int) -> tuple[int, int]:
    """(frame length, hop) in samples."""
    return max(1, round(FRAME_S * sr)), max(1, round(HOP_S * sr))


def frame_db(audio: np.ndarray, sr: int) -> np.ndarray:
    """RMS level (dB re full scale) of FRAME_S frames every HOP_S; shape (frames,)."""
    length, hop = frame_geometry(sr)
    x = np.asarray(audio, dtype=np.float64)
    starts = np.arange(1 + max(0, len(x) - length) // hop) * hop
    ends = np.minimum(starts + length, len(x))
    cumulative = np.concatenate([[0.0], np.cumsum(x * x)])
    power = (cumulative[ends] - cumulative[starts]) / np.maximum(ends - starts, 1)
    return 10 * np.log10(np.maximum(power, 1e-12))


def time_slice(audio: np.ndarray, sr: int, start_s: float, end_s: float) -> np.ndarray:
    """The samples of `audio` from `start_s` to `end_s`."""
    return audio[max(0, int(round(start_s * sr))):max(0, int(round(end_s * sr)))]


def _rms_db(samples: np.ndarray) -> float:
    return float(10 * np.log10(max(float(np.mean(np.square(samples, dtype=np.float64))), 1e-12)))


def trim_silence(audio: np.ndarray, sr: int, top_db: float, pad_s: float) -> Span:
    """Start and end (s) of the sound in `audio`: the first and last frame louder than
    (loudest frame - `top_db`), widened by `pad_s` and clamped to the audio; (0, 0) for digital
    silence. Used on every segment edge (sec 4.3)."""
    levels = frame_db(audio, sr)
    loud = np.flatnonzero(levels > max(levels.max() - top_db, SILENCE_FLOOR_DB))
    if loud.size == 0:
        return 0.0, 0.0
    length, hop = frame_geometry(sr)
    return max(0.0, loud[0] * hop / sr - pad_s), min(len(audio) / sr, (loud[-1] * hop + length) / sr + pad_s)


def _longest_run(mask: np.ndarray) -> tuple[int, int]:
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    starts, ends = edges[::2], edges[1::2]
    k = int(np.argmax(ends - starts))
    return int(starts[k]), int(ends[k] - starts[k])


def quietest_time(audio: np.ndarray, sr: int, start_s: float, end_s: float) -> float:
    """Where to cut inside the pause [start_s, end_s]: the middle of the longest run of frames
    within QUIET_TOLERANCE_DB of the quietest one, so imprecise pause edges do not cut speech.
    A pause shorter than two frames is widened around its centre."""
    if end_s - start_s < 2 * FRAME_S:
        middle = (start_s + end_s) / 2
        start_s, end_s = middle - FRAME_S, middle + FRAME_S
    start_s, end_s = max(0.0, start_s), min(len(audio) / sr, end_s)
    levels = frame_db(time_slice(audio, sr, start_s, end_s), sr)
    first, count = _longest_run(levels <= levels.min() + QUIET_TOLERANCE_DB)
    length, hop = frame_geometry(sr)
    return float(min(end_s, start_s + ((first + (count - 1) / 2) * hop + length / 2) / sr))


def noise_floor_db(audio: np.ndarray, sr: int, start_s: float, end_s: float, percentile: float) -> float:
    """The `percentile`-th percentile of the frame levels of the segment and FLOOR_CONTEXT_S around it."""
    return float(np.percentile(frame_db(time_slice(audio, sr, start_s - FLOOR_CONTEXT_S, end_s + FLOOR_CONTEXT_S),
                                        sr), percentile))


def _levels(audio: np.ndarray, sr: int, start_s: float, end_s: float, cfg: CutoffConfig) -> tuple[float, float]:
    """(loudest frame of the segment, noise floor around it) in dB, the references of the speech test."""
    peak = float(frame_db(time_slice(audio, sr, start_s, end_s), sr).max())
    return peak, noise_floor_db(audio, sr, start_s, end_s, cfg.floor_percentile)


def _is_speech(level: float, peak: float, floor: float, re_peak_db: float, cfg: CutoffConfig) -> bool:
    return level - peak > re_peak_db and level - floor > cfg.edge_floor_db


def leading_fragment_end(audio: np.ndarray, sr: int, start_s: float, end_s: float, cfg: CutoffConfig) -> float | None:
    """Where to start a segment whose start edge is speech (detect_cutoff's edge test) when a pause follows
    within `cfg.lead_fragment_s`: the quietest point (`quietest_time`) of the first MIN_PAUSE_FRAMES or more
    frames that are not speech. None otherwise. The sound before such a pause is another word's tail or a
    burst of noise; the caller keeps the new start only if the text's first word is heard right after it,
    as a word cut at its start is not."""
    if cfg.lead_fragment_s <= 0:
        return None
    peak, floor = _levels(audio, sr, start_s, end_s, cfg)
    head = time_slice(audio, sr, start_s, start_s + cfg.lead_fragment_s + 0.5)
    window = max(1, int(round(cfg.edge_window_s * sr)))
    if peak <= SILENCE_FLOOR_DB or not _is_speech(_rms_db(head[:window]), peak, floor, cfg.edge_energy_db, cfg):
        return None
    length, hop = frame_geometry(sr)
    quiet = np.array([not _is_speech(level, peak, floor, cfg.edge_energy_db, cfg) for level in frame_db(head, sr)])
    for first in range(min(len(quiet), int(cfg.lead_fragment_s * sr / hop) + 1)):
        if quiet[first:first + MIN_PAUSE_FRAMES].sum() == MIN_PAUSE_FRAMES:
            last = first + int(np.argmin(np.append(quiet[first:], False)))
            return quietest_time(audio, sr, start_s + first * hop / sr, start_s + ((last - 1) * hop + length) / sr)
    return None


def detect_cutoff(audio: np.ndarray, sr: int, start_s: float, end_s: float, cfg: CutoffConfig,
                  words: Sequence[Word] = (), end_vad_score: float | None = None,
                  heard: LastWord | None = None) -> tuple[bool, bool, str | None]:
    """Does speech run into the segment's start / end (sec 4.3: the teacher's cut sentence endings)?

    A level counts as speech when it is above both (loudest frame of the segment + `edge_energy_db`)
    and (noise floor + `edge_floor_db`), the floor being the `floor_percentile`-th percentile of the
    frame levels around the segment. An edge is cut off when the RMS of its `edge_window_s` is speech;
    the end also when a frame of its last `tail_window_s` is above (loudest + `tail_energy_db`) and the
    floor margin (a word cut in a stop closure: silent at the cut, loud just before; a natural ending
    has decayed by then, as trimming leaves `edge_pad_s` of quiet), or when the last word ends within
    `word_margin_s` of it. (Word starts are not used: faster-whisper puts the first word's start at
    the start of its input, whatever the silence there.) In noise (loudest frame less than
    `edge_vad_max_snr_db` above the floor), where a weak phone at a cut is as quiet as the noise, the end is
    also cut off when the VAD's mean speech score over its last `edge_vad_window_s` (`end_vad_score`) is above
    `edge_vad_score` and a frame there is `edge_vad_floor_db` above the floor, unless Whisper's last word
    (`heard`) is the text's. With `heard`, the end is also cut off when the last word heard is not the
    text's and ends less than `last_word_gap_s` before the end; and when it is the text's and ends at least
    `last_word_clear_s` before the end, the energy tests do not flag the end (a recording trimmed tightly
    after its last sound; a word cut short is heard running to the end). Returns (cutoff_start, cutoff_end,
    reason or None)."""
    segment = time_slice(audio, sr, start_s, end_s)
    peak, floor = _levels(audio, sr, start_s, end_s, cfg)
    window = max(1, int(round(cfg.edge_window_s * sr)))
    reasons: dict[str, list[str]] = {"start": [], "end": []}

    def speech(level: float, re_peak_db: float) -> bool:
        return _is_speech(level, peak, floor, re_peak_db, cfg)

    # a word cut short runs to the end; the text's last word heard ending clear of it shows a tight trim
    word_clear = (heard is not None and heard.matches and heard.gap_s is not None and cfg.last_word_clear_s > 0
                  and heard.gap_s >= cfg.last_word_clear_s)
    if peak > SILENCE_FLOOR_DB:
        for edge, samples in (("start", segment[:window]), ("end", segment[-window:])):
            level = _rms_db(samples)
            if speech(level, cfg.edge_energy_db) and not (edge == "end" and word_clear):
                reasons[edge].append(f"edge level {level - peak:.1f} dB re loudest frame > {cfg.edge_energy_db:g} dB, "
                                     f"{level - floor:.1f} dB above the noise floor")
        tail = float(frame_db(segment[-max(1, int(round(cfg.tail_window_s * sr))):], sr).max())
        if not reasons["end"] and not word_clear and speech(tail, cfg.tail_energy_db):
            reasons["end"].append(f"a frame of the last {cfg.tail_window_s:g} s at {tail - peak:.1f} dB re loudest "
                                  f"frame > {cfg.tail_energy_db:g} dB, {tail - floor:.1f} dB above the noise floor")
    if (end_vad_score is not None and cfg.edge_vad_score > 0 and not reasons["end"] and not (heard and heard.matches)
            and peak - floor < cfg.edge_vad_max_snr_db and end_vad_score > cfg.edge_vad_score):
        level = float(frame_db(segment[-max(1, int(round(cfg.edge_vad_window_s * sr))):], sr).max())
        if level - floor > cfg.edge_vad_floor_db:
            reasons["end"].append(f"VAD speech score {end_vad_score:.2f} over the last {cfg.edge_vad_window_s:g} s > "
                                  f"{cfg.edge_vad_score:g} ({peak - floor:.1f} dB between floor and loudest frame, "
                                  f"{level - floor:.1f} dB above the floor there)")
    if (heard is not None and cfg.last_word_gap_s > 0 and not heard.matches and heard.gap_s is not None
            and heard.gap_s < cfg.last_word_gap_s):
        reasons["end"].append(f"last word heard {heard.heard!r} is not the text's {heard.given!r} and ends "
                              f"{heard.gap_s:.3f} s before the end")
    if words and end_s - words[-1].end < cfg.word_margin_s:
        reasons["end"].append(f"word {words[-1].text.strip()!r} ends {end_s - words[-1].end:.3f} s before the cut")
    reason = "; ".join(f"{edge}: {r}" for edge, rs in reasons.items() for r in rs) or None
    return bool(reasons["start"]), bool(reasons["end"]), reason


def split_at_pauses(spans: Sequence[Span], max_s: float, margin_s: float = 0.0) -> list[list[Span]]:
    """Group the sorted speech `spans` (VAD regions or words) so that each group's extent plus
    `margin_s` on both sides is at most `max_s`, splitting recursively at the longest pause.
    A single span too long to fit forms a group of its own."""
    groups, todo = [], [list(spans)]
    while todo:
        group = todo.pop()
        if len(group) < 2 or group[-1][1] - group[0][0] + 2 * margin_s <= max_s:
            groups.append(group)
            continue
        gaps = [nxt[0] - prev[1] for prev, nxt in zip(group, group[1:])]
        cut = int(np.argmax(gaps)) + 1
        todo += [group[cut:], group[:cut]]
    return groups


def piece_bounds(groups: Sequence[Sequence[Span]], duration_s: float, margin_s: float,
                 cut_in: Callable[[float, float], float]) -> list[Span]:
    """Start and end of each group's piece. A pause up to 2 * `margin_s` long is cut once, at
    `cut_in(pause)`; a longer one ends the piece before it and starts the next one each within
    `margin_s` of their speech. The file's own edges stay edges when speech is that close."""
    first, last = groups[0][0][0], groups[-1][-1][1]
    starts = [0.0 if first <= margin_s else cut_in(first - margin_s, first)]
    ends = []
    for before, after in zip(groups, groups[1:]):
        pause_start, pause_end = before[-1][1], after[0][0]
        if pause_end - pause_start <= 2 * margin_s:
            ends.append(cut_in(pause_start, pause_end))
            starts.append(ends[-1])
        else:
            ends.append(cut_in(pause_start, pause_start + margin_s))
            starts.append(cut_in(pause_end - margin_s, pause_end))
    ends.append(duration_s if duration_s - last <= margin_s else cut_in(last, last + margin_s))
    return list(zip(starts, ends))
