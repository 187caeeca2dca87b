"""The microphone side: recording, and later live dictation and corrections.

It sits above data/, models/ and synth/ because it needs them: prompts are generated sentences,
takes are checked with data/quality.py and saved as manifests, and dictation will run a model.
"""
