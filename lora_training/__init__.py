"""Personalise Moonshine speech-to-text to one voice and vocabulary with LoRA/DoRA adapters."""

__version__ = "0.1.0"
