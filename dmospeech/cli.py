"""`dmospeech` command line: profiles and manifest summaries (more commands join per stage)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


from dmospeech import wait_actively_for_synthesis
from dmospeech.config import ConfigError, TeacherSamplerConfig, load_params
from dmospeech.config.profiles import apply_profile
from dmospeech.ops.atomic import dumps_strict, write_text_atomic


def cmd_profile(args: argparse.Namespace) -> int:
    """Merge profiles/<name>.yaml (several: in the order given, a later one wins) over the params file and
    write it back (validated, atomically), keeping the params file's comments (ruamel.yaml round trip)."""
    import yaml

    from dmospeech.config import Params
    from dmospeech.config.parse import from_dict

    profiles = [Path(n) if n.endswith(".yaml") else Path("profiles") / f"{n}.yaml" for n in args.profile]
    missing = [p for p in profiles if not p.exists()]
    if missing:
        names = sorted(p.stem for p in Path("profiles").glob("*.yaml"))
        print(f"profile {missing[0]} not found; available: {names}", file=sys.stderr)
        return 2
    try:
        text = apply_profile(args.params, *profiles)
        from_dict(Params, yaml.safe_load(text))  # validate before writing
    except ConfigError as err:
        print(f"dmospeech profile: {err}; nothing written", file=sys.stderr)
        return 1
    write_text_atomic(args.params, text)
    print(f"applied {', '.join(map(str, profiles))} to {args.params} (revert with `git checkout {args.params}`)")
    return 0


def cmd_quarantine(args: argparse.Namespace) -> int:
    """Counts of quarantined items per stage and reason, or (--list) every item with its path, reason
    and detail; --reason and --stage filter, --json prints JSON."""
    from rich.console import Console
    from rich.table import Table

    from dmospeech.data.manifest import QUARANTINE_REASONS, open_manifests

    if args.reason is not None and args.reason not in QUARANTINE_REASONS:
        print(f"dmospeech quarantine: unknown reason {args.reason!r}; known: {', '.join(sorted(QUARANTINE_REASONS))}",
              file=sys.stderr)
        return 2
    params = load_params(args.params)
    con = open_manifests([m for m in params.manifests() if Path(m).exists()])
    if "quarantine" not in {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}:
        print("dmospeech quarantine: no manifest written yet (run `dvc repro prepare_corpus`)", file=sys.stderr)
        return 2
    filters = {col: value for col, value in (("reason", args.reason), ("stage", args.stage)) if value}
    where = " WHERE " + " AND ".join(f"{col} = ?" for col in filters) if filters else ""
    sql = (f"SELECT stage, reason, item_kind, item_id, path, detail FROM quarantine{where} "
           "ORDER BY stage, reason, path, item_id" if args.list else
           f"SELECT stage, reason, count(*) AS count FROM quarantine{where} GROUP BY ALL ORDER BY 1, 2")
    cursor = con.execute(sql, list(filters.values()))
    columns = [d[0] for d in cursor.description]
    rows = [dict(zip(columns, row)) for row in cursor.fetchall()]
    if args.json:
        print(dumps_strict(rows, indent=1))
        return 0
    if args.list:  # one item per two lines, whole paths (a table would fold them): grep-able
        for row in rows:
            print(f"{row['stage']}\t{row['reason']}\t{row['item_kind']}\t{row['path']}\n\t{row['detail']}")
        print(f"{len(rows)} quarantined item(s)")
        return 0
    table = Table(*columns, title="quarantine")
    for row in rows:
        table.add_row(*(str(row[c]) for c in columns))
    Console().print(table)
    if "transcript_checks" in {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}:
        doubtful = con.execute("SELECT count(*) FROM transcript_checks WHERE verdict = 'doubtful'").fetchone()[0]
        print(f"transcript_doubtful (still trains): {doubtful} given transcript(s) between check_transcripts' "
              f"doubtful_cer {params.check_transcripts.doubtful_cer} and mismatch_cer {params.check_transcripts.mismatch_cer}")
    return 0


def model_dir(name: str, params_path: str) -> Path:
    """`teacher` / `student` -> that training stage's out_dir in params; anything else is a path."""
    if name == "teacher":
        return Path(load_params(params_path).train_teacher.loop.out_dir)
    if name == "student":
        return Path(load_params(params_path).distill_student.loop.out_dir)
    return Path(name)


def cmd_synthesize(args: argparse.Namespace) -> int:
    """One sentence (--text, --prompt -> --out) or a batch list (--batch list.tsv -> --out-dir), watermarked
    unless --no-watermark."""
    wait_actively_for_synthesis()
    from dmospeech.synthesis.synthesizer import SynthesisError
    from dmospeech.synthesis.tts import load_tts, read_batch_file, write_batch_report

    if args.batch is None and (args.text is None or args.prompt is None or args.out is None):
        print("dmospeech synthesize: give --text, --prompt and --out, or --batch LIST.tsv --out-dir DIR", file=sys.stderr)
        return 2
    if args.batch is not None and args.out_dir is None:
        print("dmospeech synthesize: --batch needs --out-dir", file=sys.stderr)
        return 2
    params = load_params(args.params)
    transcriber = None
    if args.batch is not None or args.prompt_text is None:
        from dmospeech.data.transcribe import Transcriber

        transcriber = _Lazy(lambda: Transcriber(params.segment_audio))
    try:
        sampler = TeacherSamplerConfig(cfg_scale=args.cfg_scale)
        tts, note = load_tts(model_dir(args.model, args.params), params, args.decoder, transcriber, sampler, args.runtime)
        if note:
            print(note, file=sys.stderr)
        if args.batch is not None:
            results = tts.synthesize_batch(read_batch_file(args.batch), args.out_dir, steps=args.steps,
                                           watermark=not args.no_watermark)
            report = write_batch_report(results, Path(args.out_dir) / "batch_report.tsv")
            failed = [r for r in results if r.error is not None]
            for r in failed:
                print(f"failed: {r.item.name}: {r.error}", file=sys.stderr)
            print(f"{len(results) - len(failed)} of {len(results)} items written to {args.out_dir}; report {report}")
            return 1 if failed else 0
        prompt = tts.prompt(args.prompt, args.prompt_text)
        audio, rate = tts.synthesize(args.text, prompt, steps=args.steps, seed=args.seed, seconds=args.seconds)
        tts.save(args.out, audio, rate, watermark=not args.no_watermark)
    except (SynthesisError, ValueError) as err:
        print(f"dmospeech synthesize: {err}", file=sys.stderr)
        return 2
    decoder = "codec decoder" if tts.synthesizer.codec.cfg.fast_decoder is None else "fast decoder"
    print(f"wrote {args.out}: {len(audio) / rate:.2f} s at {rate} Hz, {decoder}, "
          f"{'not ' if args.no_watermark else ''}watermarked (prompt transcript: {prompt.text!r})")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """The student's denoiser, text encoder, fast decoder and codec encoder as ONNX graphs in OUT_DIR."""
    from dmospeech.synthesis.export import ExportError, export_onnx
    from dmospeech.synthesis.synthesizer import SynthesisError

    params = load_params(args.params)
    decoder = args.decoder_checkpoint or params.decoder_checkpoint_dir("fast")
    try:
        out = export_onnx(model_dir(args.model, args.params), decoder, args.out_dir, int8=args.int8)
    except (ExportError, SynthesisError) as err:
        print(f"dmospeech export: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out} (run it with `dmospeech synthesize --runtime onnx{'-int8' if args.int8 else ''} "
          f"--model {out}`)")
    return 0


def cmd_watermark(args: argparse.Namespace) -> int:
    """Score and verdict of each file: does it carry the synthesis watermark? Exit 0 if all were read."""
    from dmospeech.synthesis.watermark import THRESHOLD, detect_file

    failed = 0
    for path in args.files:
        try:
            found = detect_file(path)
        except ValueError as err:
            print(f"dmospeech watermark: {err}", file=sys.stderr)
            failed += 1
            continue
        print(f"{path}\t{found.score:.3f}\t{found.verdict}")
    print(f"score: PerTh detector in [0, 1], watermarked at >= {THRESHOLD}", file=sys.stderr)
    return 2 if failed else 0


def cmd_ui(args: argparse.Namespace) -> int:
    """The web page to try a voice (Gradio), on --host:--port until interrupted."""
    wait_actively_for_synthesis()
    from dmospeech.ui.app import launch

    try:
        launch(args.params, args.model, host=args.host, port=args.port, watermark=not args.no_watermark)
    except OSError as err:   # Gradio's "Cannot find empty port"
        print(f"dmospeech ui: cannot serve on {args.host}:{args.port}: {err}; pick another --port", file=sys.stderr)
        return 2
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    """What trained a model, or what was built from a source file or a speaker (table or JSON)."""
    from rich.console import Console

    from dmospeech.lineage.audit import LineageError, artifacts_using, model_lineage, render

    params = load_params(args.params)
    try:
        result = (model_lineage(params, args.target) if args.kind == "model"
                  else artifacts_using(params, **{args.kind: args.target}))
    except LineageError as err:
        print(f"dmospeech lineage: {err}", file=sys.stderr)
        return 2
    if args.kind == "source" and Path(args.target).is_file():   # a file may be synthesised output, not a recording
        from dmospeech.synthesis.watermark import file_verdict

        result = {"query": result["query"], "watermark": file_verdict(args.target), **result}
    if args.json:
        print(dumps_strict(result, indent=1, default=str))
    else:
        render(result, Console(), args.limit)
    return 0


def cmd_registry(args: argparse.Namespace) -> int:
    """List the registered models (current first marked), or point `current` at one."""
    from rich.console import Console

    from dmospeech.lineage.audit import render
    from dmospeech.lineage.registry import Registry, RegistryError

    registry = Registry(load_params(args.params).retrain.registry_dir)
    try:
        if args.promote:
            registry.promote(args.promote)
            print(f"current -> {args.promote}")
            return 0
    except RegistryError as err:
        print(f"dmospeech registry: {err}", file=sys.stderr)
        return 2
    current = registry.current_id()
    rows = [{"current": r["model_id"] == current, **{k: r.get(k) for k in ("model_id", "status", "reason", "metrics",
                                                                          "git_revision", "created_at")}}
            for r in registry.rows()]
    if args.json:
        print(dumps_strict(rows, indent=1))
    else:
        render({"registry": rows}, Console(), limit=0)
    return 0


class _Lazy:
    """A transcriber built on its first call (loading Whisper takes seconds; most prompts have text)."""

    def __init__(self, build):
        self.build, self.instance = build, None

    def __call__(self, audio, sample_rate):
        self.instance = self.instance or self.build()
        return self.instance(audio, sample_rate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dmospeech", description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("profile", help="apply profiles/<name>.yaml to params.yaml (e.g. paper, dev; "
                                       "several in order: paper paper_smoke)")
    p.add_argument("profile", nargs="+")
    p.set_defaults(func=cmd_profile)
    q = sub.add_parser("quarantine", help="quarantined items: counts per stage and reason, or --list each one")
    q.add_argument("--list", action="store_true", help="each item with its path, reason and detail")
    q.add_argument("--reason", help="only this reason (e.g. duplicate, missing_audio)")
    q.add_argument("--stage", help="only items this stage quarantined (e.g. prepare_corpus)")
    q.add_argument("--json", action="store_true", help="print JSON instead of a table")
    q.set_defaults(func=cmd_quarantine)
    lin = sub.add_parser("lineage", help="audit: what trained a model, or what used a source file or a speaker")
    lin.add_argument("kind", choices=["model", "source", "speaker"])
    lin.add_argument("target", help="model: checkpoint, out_dir, model id or 'current'; source: path, sha256 or "
                                    "file id; speaker: name")
    lin.add_argument("--json", action="store_true", help="print JSON instead of tables")
    lin.add_argument("--limit", type=int, default=20, help="rows per table (0: all)")
    lin.set_defaults(func=cmd_lineage)
    reg = sub.add_parser("registry", help="list registered models; --promote ID moves `current`")
    reg.add_argument("--promote", metavar="MODEL_ID")
    reg.add_argument("--json", action="store_true")
    reg.set_defaults(func=cmd_registry)
    s = sub.add_parser("synthesize", help="speak --text in the voice of a --prompt recording")
    s.add_argument("--text")
    s.add_argument("--prompt", help="reference recording (any rate/format ffmpeg reads)")
    s.add_argument("--prompt-text", default=None, help="its transcript (default: transcribed by WhisperX)")
    s.add_argument("--model", default="teacher", help="teacher, student (their stages' out_dir in params) or a checkpoint path")
    s.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's: 128 teacher, 4 student)")
    s.add_argument("--cfg-scale", type=float, default=TeacherSamplerConfig.cfg_scale,
                   help="teacher: classifier-free guidance scale w of eq. 27 (default: the paper's 2)")
    s.add_argument("--seconds", type=float, default=None, help="length of the generated speech (default: prompt rate)")
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--decoder", choices=["codec", "fast"], default=None,
                   help="latents -> audio: the codec's own decoder or train_fast_decoder's (default: evaluate.decoder)")
    s.add_argument("--runtime", choices=["torch", "onnx", "onnx-int8"], default="torch",
                   help="onnx, onnx-int8: run a `dmospeech export` folder (--model) with onnxruntime")
    s.add_argument("--out", type=Path, help="output wav of one sentence")
    s.add_argument("--batch", type=Path, help="tab-separated list: text, prompt [, prompt_text, name, seed]")
    s.add_argument("--out-dir", type=Path, help="output folder of --batch (with batch_report.tsv)")
    s.add_argument("--no-watermark", action="store_true", help="write the audio without the watermark")
    s.set_defaults(func=cmd_synthesize)
    w = sub.add_parser("watermark", help="detect the synthesis watermark: `watermark detect FILE...`")
    w.add_argument("action", choices=["detect"])
    w.add_argument("files", nargs="+", metavar="FILE")
    w.set_defaults(func=cmd_watermark)
    u = sub.add_parser("ui", help="a web page to try a voice (Gradio; http://127.0.0.1:7860 by default)")
    u.add_argument("--model", default="current", help="preselected model: current (the registry's), a model id, "
                                                      "teacher, student or a training folder")
    u.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    u.add_argument("--port", type=int, default=7860)
    u.add_argument("--no-watermark", action="store_true", help="write the page's audio without the watermark")
    u.set_defaults(func=cmd_ui)
    e = sub.add_parser("export", help="write the student as ONNX graphs for onnxruntime (--runtime onnx)")
    e.add_argument("--format", choices=["onnx"], required=True)
    e.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    e.add_argument("--model", default="student", help="student (distill_student's out_dir) or a checkpoint path")
    e.add_argument("--decoder-checkpoint", default=None,
                   help="fast decoder checkpoint or out_dir (default: train_fast_decoder's out_dir)")
    e.add_argument("--int8", action="store_true", help="also write a dynamically quantised int8 denoiser "
                   "(--runtime onnx-int8; check its quality first: benchmarks/int8_quality.py)")
    e.set_defaults(func=cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError) as err:
        print(f"dmospeech: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
