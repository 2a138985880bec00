"""Stage prepare_corpus: merge the scanned sources into source_files (duplicates and scan
problems quarantined, speakers assigned to splits)."""
import pandas as pd
from rich.console import Console

from dmospeech.config import load_params
from dmospeech.data.ingest import merge_sources, scan_db_path
from dmospeech.data.manifest import Lineage, read_table, write_stage_db


def main() -> None:
    cfg = load_params().prepare_corpus
    scanned = pd.concat([read_table(scan_db_path(cfg.manifest, s.name), "scanned_files") for s in cfg.sources],
                        ignore_index=True)
    lineage = Lineage.for_stage("prepare_corpus", cfg)
    files, quarantine = merge_sources(scanned, cfg.split, lineage)
    write_stage_db(cfg.manifest, {"source_files": files, "quarantine": quarantine})
    splits = files.groupby("split")["speaker"].nunique().to_dict()
    Console().print(f"[bold]prepare_corpus[/]: {len(files)} files, {files['speaker'].nunique()} speakers "
                    f"(per split {splits}), {len(quarantine)} quarantined "
                    f"{quarantine['reason'].value_counts().to_dict() or ''}")


if __name__ == "__main__":
    main()
