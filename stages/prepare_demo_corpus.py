"""Stage prepare_demo_corpus: build the embedded demo corpus (params group prepare_demo_corpus)."""
from rich.console import Console

from dmospeech.config import load_params
from dmospeech.data.demo import build_demo_corpus


def main() -> None:
    cfg = load_params().prepare_demo_corpus
    made = build_demo_corpus(cfg)
    Console().print(f"[bold]prepare_demo_corpus[/]: {made} -> {cfg.out_dir}")


if __name__ == "__main__":
    main()
