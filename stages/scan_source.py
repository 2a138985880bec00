"""Stage scan_source@<i>: list and hash the files of one source of prepare_corpus.sources.

Usage: python stages/scan_source.py <source name>
"""
import sys
from rich.console import Console

from dmospeech.config import load_params
from dmospeech.data.ingest import scan_db_path, scan_rows
from dmospeech.data.manifest import Lineage, write_stage_db
from dmospeech.ops.executor import Executor


def main(name: str) -> None:
    params = load_params()
    cfg = params.prepare_corpus
    sources = {s.name: s for s in cfg.sources}
    if name not in sources:
        sys.exit(f"scan_source: no source named {name!r} in params prepare_corpus.sources ({sorted(sources)})")
    lineage = Lineage.for_stage("scan_source", {"source": sources[name], "audio_extensions": cfg.audio_extensions})
    with Executor(params.compute) as executor:
        rows = scan_rows(sources[name], cfg.audio_extensions, lineage, executor=executor)
    write_stage_db(scan_db_path(cfg.manifest, name), {"scanned_files": rows})
    problems = rows["problem"].value_counts().to_dict()
    Console().print(f"[bold]scan_source[/] {name}: {len(rows)} files, problems {problems or 'none'}")


if __name__ == "__main__":
    main(sys.argv[1])
