"""`dmospeech` command line: profiles and manifest summaries (more commands join per stage)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

from dmospeech.config import ConfigError, deep_merge, load_params, read_yaml


def cmd_profile(args: argparse.Namespace) -> int:
    """Merge profiles/<name>.yaml over the params file and write it back (validated, atomically)."""
    profile = Path(args.profile) if args.profile.endswith(".yaml") else Path("profiles") / f"{args.profile}.yaml"
    if not profile.exists():
        names = sorted(p.stem for p in Path("profiles").glob("*.yaml"))
        print(f"profile {profile} not found; available: {names}", file=sys.stderr)
        return 2
    load_params(args.params, profile=profile)  # validate before writing
    merged = deep_merge(read_yaml(args.params), read_yaml(profile))
    tmp = Path(f"{args.params}.tmp")
    tmp.write_text(f"# params.yaml with profile {profile} applied by `dmospeech profile`\n"
                   + yaml.safe_dump(merged, sort_keys=False, allow_unicode=True, width=110))
    os.replace(tmp, args.params)
    print(f"applied {profile} to {args.params} (revert with `git checkout {args.params}`)")
    return 0


def cmd_quarantine(args: argparse.Namespace) -> int:
    """Counts of quarantined items per stage and reason, from the manifests."""
    from rich.console import Console
    from rich.table import Table

    from dmospeech.data.manifest import open_manifests

    params = load_params(args.params)
    con = open_manifests([m for m in params.manifests() if Path(m).exists()])
    rows = con.execute("SELECT stage, reason, count(*) FROM quarantine GROUP BY ALL ORDER BY 1, 2").fetchall()
    table = Table("stage", "reason", "count", title="quarantine")
    for stage, reason, count in rows:
        table.add_row(stage, reason, str(count))
    Console().print(table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dmospeech", description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("profile", help="apply profiles/<name>.yaml to params.yaml (e.g. paper, dev)")
    p.add_argument("profile")
    p.set_defaults(func=cmd_profile)
    q = sub.add_parser("quarantine", help="summarise quarantined items per stage and reason")
    q.set_defaults(func=cmd_quarantine)
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
