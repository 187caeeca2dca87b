"""Entry point the justfile calls: `python main.py <command> ...`."""
from lora_training.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
