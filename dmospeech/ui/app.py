"""The Gradio page of `dmospeech ui` (layout and event wiring; the work is in `session.Voices`).

Offline by construction: Gradio's analytics and version check are off, no share link, no
server-side rendering (no Node), no "share to Hugging Face" buttons, and the theme uses the
browser's own fonts (no Google Fonts).
Errors in the user's input are shown in the page's status line, never as a stack trace.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Optional

from dmospeech.config import load_params
from dmospeech.synthesis.watermark import METHOD
from dmospeech.ui.session import DECODERS, UIError, Voices, model_choices

log = logging.getLogger(__name__)
SYSTEM_FONTS = (["ui-sans-serif", "system-ui", "sans-serif"], ["ui-monospace", "monospace"])


def _gradio():
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"   # before the import: it reads the flag once
    import gradio as gr

    return gr


def _failure(err: Exception) -> str:
    """The status line for a failed request: input errors as they are, anything else named but without
    a trace (the trace goes to the server's log)."""
    if isinstance(err, (UIError, ValueError, FileNotFoundError)):
        return f"**Error:** {err}"
    log.exception("synthesis failed")
    return f"**Error:** unexpected {type(err).__name__}: {err} (details in the server's log)"


def build(voices: Voices, model: str):
    """The page: a voice tab (one sentence) and a batch tab (a `synthesize --batch` list)."""
    gr = _gradio()

    def speak(model, decoder, prompt, prompt_text, text, steps, seed, seconds):
        try:
            seed = None if seed is None or seed < 0 else int(seed)
            done = voices.speak(model, decoder, prompt, prompt_text, text, int(steps or 0), seed, float(seconds or 0))
        except Exception as err:  # the page's boundary: every failure becomes a message
            return None, None, _failure(err)
        sim = "n/a (too little voiced audio)" if done.sim is None else f"{done.sim:.3f}"
        mark = "watermarked" if done.watermarked else "**not** watermarked (--no-watermark)"
        status = (f"**Done:** {done.seconds:.2f} s of speech · RTF {done.rtf:.3f} · SIM to the prompt {sim} · "
                  f"{mark} · prompt transcript: {done.prompt_text!r}" + (f"\n\n{done.note}" if done.note else ""))
        return str(done.audio_path), str(done.spectrogram_path), status

    def batch(model, decoder, listing, prompts, steps):
        try:
            archive, report, rows = voices.batch(model, decoder, listing, prompts or [], int(steps or 0))
        except Exception as err:
            return None, None, _failure(err)
        failed = sum(row[1] != "ok" for row in rows)
        return str(archive), rows, f"**Done:** {len(rows) - failed} of {len(rows)} items written ({report.name} inside)"

    with gr.Blocks(title="dmospeech: try a voice") as page:
        gr.Markdown("# dmospeech: try a voice\nEvery file written here carries an inaudible-by-design watermark "
                    f"({METHOD}) unless the server runs with `--no-watermark`.")
        with gr.Row():
            model_box = gr.Dropdown(model_choices(voices.params), value=model, label="Model", allow_custom_value=True,
                                    info="current, a registered id, teacher, student, or a training folder")
            decoder_box = gr.Radio(list(DECODERS), value="default", label="Decoder")
        with gr.Tab("Voice"):
            with gr.Row():
                with gr.Column():
                    prompt = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Prompt (the voice)",
                                      elem_id="prompt", buttons=["download"])
                    prompt_text = gr.Textbox(label="Prompt transcript (optional: else Whisper transcribes it)",
                                             elem_id="prompt_text")
                    text = gr.Textbox(label="Text to speak", lines=2, elem_id="text")
                    with gr.Row():
                        steps = gr.Number(0, label="Sampler steps (0: the model's)", precision=0, minimum=0)
                        seed = gr.Number(0, label="Seed (-1: random)", precision=0)
                        seconds = gr.Number(0, label="Length, s (0: the prompt's speaking rate)", minimum=0,
                                            elem_id="seconds")
                    go = gr.Button("Synthesise", variant="primary", elem_id="synthesise")
                with gr.Column():
                    status = gr.Markdown(elem_id="status")
                    audio = gr.Audio(type="filepath", label="Output (48 kHz)", interactive=False, elem_id="output",
                                     buttons=["download"])
                    picture = gr.Image(type="filepath", label="Spectrograms: prompt, output", interactive=False,
                                       buttons=["download", "fullscreen"])
            go.click(speak, [model_box, decoder_box, prompt, prompt_text, text, steps, seed, seconds],
                     [audio, picture, status])
        with gr.Tab("Batch"):
            gr.Markdown("A tab-separated list with the columns of `dmospeech synthesize --batch` (text, prompt "
                        "[, prompt_text, name, seed]); upload the prompt files it names alongside.")
            with gr.Row():
                listing = gr.File(label="List (.tsv)", file_types=[".tsv", ".txt"], type="filepath")
                prompts = gr.File(label="Prompt files", file_count="multiple", type="filepath")
            batch_steps = gr.Number(0, label="Sampler steps (0: the model's)", precision=0, minimum=0)
            run = gr.Button("Synthesise the list", variant="primary")
            batch_status = gr.Markdown(elem_id="batch_status")
            archive = gr.File(label="Audio and batch_report.tsv (zip)", interactive=False)
            table = gr.Dataframe(headers=["name", "status", "output", "watermarked", "seconds", "wall_seconds",
                                          "error"], interactive=False)
            run.click(batch, [model_box, decoder_box, listing, prompts, batch_steps], [archive, table, batch_status])
    return page


def launch(params_path: str, model: str = "current", host: str = "127.0.0.1", port: int = 7860,
           watermark: bool = True, out_dir: Optional[Path] = None, block: bool = True):
    """Serve the page on host:port (this machine only by default). `block=False` returns the running
    Gradio app (tests close it with `.close()`)."""
    gr = _gradio()
    out_dir = Path(out_dir or tempfile.mkdtemp(prefix="dmospeech-ui-"))
    page = build(Voices(load_params(params_path), out_dir, watermark), model)
    theme = gr.themes.Default(font=SYSTEM_FONTS[0], font_mono=SYSTEM_FONTS[1])
    page.launch(server_name=host, server_port=port, share=False, ssr_mode=False, theme=theme,
                prevent_thread_lock=not block, allowed_paths=[str(out_dir)], quiet=not block)
    return page
