-- Manifest schema for every table the pipeline writes.
-- Each stage writes its own DuckDB file (a DVC output) holding the tables it owns; the
-- Manifest class attaches them read-only so queries can join across stages.
-- Lineage columns on every row: source_sha256 (content hash of the original file),
-- parent_id (row id in the upstream table), stage, params_hash, code_version, created_at (when the row
-- was first produced, kept across reruns that write it again) and updated_at (when its content last changed;
-- see dmospeech.data.manifest.keep_first_times).

CREATE TABLE scanned_files (            -- one per source (stage scan_source), merged by prepare_corpus
    source_name    VARCHAR NOT NULL,
    source_kind    VARCHAR NOT NULL,
    path           VARCHAR NOT NULL,
    rel_path       VARCHAR NOT NULL,
    size_bytes     BIGINT,                -- NULL when the file is missing
    speaker        VARCHAR NOT NULL,
    text           VARCHAR,
    transcribed    BOOLEAN NOT NULL,
    problem        VARCHAR,               -- a quarantine reason found while scanning, else NULL
    problem_detail VARCHAR,
    source_sha256  VARCHAR,               -- NULL when the file is missing
    parent_id      VARCHAR,
    stage          VARCHAR NOT NULL,
    params_hash    VARCHAR NOT NULL,
    code_version   VARCHAR NOT NULL,
    created_at     TIMESTAMP NOT NULL,
    updated_at     TIMESTAMP NOT NULL
);

CREATE TABLE source_files (
    file_id        VARCHAR PRIMARY KEY,   -- first 16 hex digits of sha256
    source_name    VARCHAR NOT NULL,      -- name of the source in params
    source_kind    VARCHAR NOT NULL,      -- librispeech | ljspeech | sidecar | csv | longform
    path           VARCHAR NOT NULL,      -- absolute path of the original file
    rel_path       VARCHAR NOT NULL,      -- path relative to the source root
    size_bytes     BIGINT NOT NULL,
    speaker        VARCHAR NOT NULL,
    text           VARCHAR,               -- NULL for untranscribed long-form audio
    transcribed    BOOLEAN NOT NULL,
    split          VARCHAR NOT NULL,      -- train | valid | test (by speaker)
    source_sha256  VARCHAR NOT NULL,
    parent_id      VARCHAR,
    stage          VARCHAR NOT NULL,
    params_hash    VARCHAR NOT NULL,
    code_version   VARCHAR NOT NULL,
    created_at     TIMESTAMP NOT NULL,
    updated_at     TIMESTAMP NOT NULL
);

CREATE TABLE audio (
    file_id            VARCHAR PRIMARY KEY,
    audio_path         VARCHAR NOT NULL,  -- 48 kHz mono FLAC, relative to the project root
    sample_rate        INTEGER NOT NULL,
    num_samples        BIGINT NOT NULL,
    duration_s         DOUBLE NOT NULL,
    orig_sample_rate   INTEGER NOT NULL,
    orig_channels      INTEGER NOT NULL,
    orig_duration_s    DOUBLE NOT NULL,
    peak               DOUBLE NOT NULL,   -- of the original, before normalisation
    rms                DOUBLE NOT NULL,
    clipped_fraction   DOUBLE NOT NULL,
    dc_offset          DOUBLE NOT NULL,
    gain_db            DOUBLE NOT NULL,   -- applied by normalisation
    speaker            VARCHAR NOT NULL,
    split              VARCHAR NOT NULL,
    source_sha256      VARCHAR NOT NULL,
    parent_id          VARCHAR NOT NULL,
    stage              VARCHAR NOT NULL,
    params_hash        VARCHAR NOT NULL,
    code_version       VARCHAR NOT NULL,
    created_at         TIMESTAMP NOT NULL,
    updated_at         TIMESTAMP NOT NULL
);

CREATE TABLE segments (
    segment_id       VARCHAR PRIMARY KEY, -- <file_id>_<index>
    file_id          VARCHAR NOT NULL,
    audio_path       VARCHAR NOT NULL,
    start_s          DOUBLE NOT NULL,
    end_s            DOUBLE NOT NULL,
    duration_s       DOUBLE NOT NULL,
    sample_rate      INTEGER NOT NULL,
    text             VARCHAR NOT NULL,
    text_source      VARCHAR NOT NULL,    -- given | whisper
    speaker          VARCHAR NOT NULL,
    split            VARCHAR NOT NULL,
    cutoff_start     BOOLEAN NOT NULL,
    cutoff_end       BOOLEAN NOT NULL,
    cutoff_reason    VARCHAR,
    use_for_training BOOLEAN NOT NULL,
    source_sha256    VARCHAR NOT NULL,
    parent_id        VARCHAR NOT NULL,
    stage            VARCHAR NOT NULL,
    params_hash      VARCHAR NOT NULL,
    code_version     VARCHAR NOT NULL,
    created_at       TIMESTAMP NOT NULL,
    updated_at       TIMESTAMP NOT NULL
);

CREATE TABLE phonemes (
    segment_id          VARCHAR PRIMARY KEY,
    text_normalized     VARCHAR NOT NULL,
    phonemes            VARCHAR NOT NULL,  -- IPA from espeak-ng, words separated by spaces
    phoneme_ids         INTEGER[] NOT NULL, -- one id per IPA symbol (ipa vocabulary)
    num_phonemes        INTEGER NOT NULL,
    phonemes_per_second DOUBLE NOT NULL,
    vocab_version       VARCHAR NOT NULL,
    source_sha256       VARCHAR NOT NULL,
    parent_id           VARCHAR NOT NULL,
    stage               VARCHAR NOT NULL,
    params_hash         VARCHAR NOT NULL,
    code_version        VARCHAR NOT NULL,
    created_at          TIMESTAMP NOT NULL,
    updated_at          TIMESTAMP NOT NULL
);

CREATE TABLE transcript_checks (       -- stage check_transcripts: one row per segment with a given transcript
    segment_id     VARCHAR PRIMARY KEY,
    file_id        VARCHAR NOT NULL,
    source_name    VARCHAR NOT NULL,
    text           VARCHAR NOT NULL,      -- the given transcript
    asr_text       VARCHAR,               -- what Whisper heard (NULL when the source is skipped)
    cer            DOUBLE,                -- character error rate of asr_text against text, normalised
    verdict        VARCHAR NOT NULL,      -- ok | doubtful | mismatch | skipped
    whisper_model  VARCHAR NOT NULL,
    source_sha256  VARCHAR NOT NULL,
    parent_id      VARCHAR NOT NULL,
    stage          VARCHAR NOT NULL,
    params_hash    VARCHAR NOT NULL,
    code_version   VARCHAR NOT NULL,
    created_at     TIMESTAMP NOT NULL,
    updated_at     TIMESTAMP NOT NULL
);

CREATE TABLE quarantine (
    item_id        VARCHAR NOT NULL,      -- file_id or segment_id; a path hash for a file prepare_corpus quarantines
    item_kind      VARCHAR NOT NULL,      -- source_file | segment
    path           VARCHAR NOT NULL,
    reason         VARCHAR NOT NULL,      -- short code, see dmospeech.data.manifest.QUARANTINE_REASONS
    detail         VARCHAR NOT NULL,      -- human-readable explanation
    source_sha256  VARCHAR,
    parent_id      VARCHAR,
    stage          VARCHAR NOT NULL,
    params_hash    VARCHAR NOT NULL,
    code_version   VARCHAR NOT NULL,
    created_at     TIMESTAMP NOT NULL,
    updated_at     TIMESTAMP NOT NULL
);

CREATE TABLE latents (                  -- stage encode_latents: one row per encoded segment
    segment_id        VARCHAR PRIMARY KEY,
    shard             VARCHAR NOT NULL,   -- safetensors file, relative to encode_latents.out_dir
    frame_offset      BIGINT NOT NULL,    -- first row of this segment in the shard's (frames, c) tensor
    num_frames        INTEGER NOT NULL,   -- ceil(num_samples / hop)
    num_samples       BIGINT NOT NULL,    -- segment audio samples at 48 kHz
    mean              DOUBLE NOT NULL,    -- over all frames and channels of this segment
    std               DOUBLE NOT NULL,
    min               DOUBLE NOT NULL,
    max               DOUBLE NOT NULL,
    codec_checkpoint  VARCHAR NOT NULL,   -- checkpoint folder of the codec that encoded it
    source_sha256     VARCHAR NOT NULL,
    parent_id         VARCHAR NOT NULL,   -- segments.segment_id
    stage             VARCHAR NOT NULL,
    params_hash       VARCHAR NOT NULL,
    code_version      VARCHAR NOT NULL,
    created_at        TIMESTAMP NOT NULL,
    updated_at        TIMESTAMP NOT NULL
);
