# Day-to-day recipes. `make demo` / `make test` set up .venv on a fresh machine first.
set positional-arguments

python := if path_exists(".venv/bin/python") == "true" { ".venv/bin/python" } else { "python3" }

# list the recipes
default:
    @just --list

# split data/my_voice_all.jsonl into train/eval manifests (defaults: 80/20, seed 42)
split-dataset *ARGS:
    {{python}} main.py split-dataset "$@"

# load a model reference and transcribe a test clip (default: embedded:moonshine-base)
models-check *ARGS:
    {{python}} main.py models check "$@"

# the end-to-end demo on the embedded model, offline
demo:
    {{python}} main.py demo

# the whole test suite
test *ARGS:
    {{python}} -m pytest -q "$@"
