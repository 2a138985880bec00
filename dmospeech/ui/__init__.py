"""`dmospeech ui`: a web page to try a voice (Gradio), over the synthesis API and the registry."""
