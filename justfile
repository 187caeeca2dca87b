# Day-to-day recipes. `make demo` / `make test` set up .venv on a fresh machine first.
set positional-arguments

python := if path_exists(".venv/bin/python") == "true" { ".venv/bin/python" } else { "python3" }

# list the recipes
default:
    @just --list

# split data/my_voice_all.jsonl into train/eval manifests (defaults: 80/20, seed 42)
split-dataset *ARGS:
    @{{python}} main.py split-dataset "$@"

# load a model reference and transcribe a test clip (default: embedded:moonshine-base)
models-check *ARGS:
    @{{python}} main.py models check "$@"

# train an adapter in the background: just run-experiment NAME --max-steps 500 ...
run-experiment NAME *ARGS:
    @{{python}} main.py run-experiment "$@"

# stream a run's log until it ends (exit code = outcome)
poll NAME *ARGS:
    @{{python}} main.py poll "$@"

# one run in detail, or every run under outputs/ when NAME is omitted
status *ARGS:
    @{{python}} main.py status "$@"

# checkpoint and stop a running experiment
stop NAME *ARGS:
    @{{python}} main.py stop "$@"

# check manifests (all problems at once, with file:line)
validate-manifest +PATHS:
    @{{python}} main.py validate-manifest "$@"

# speak jargon sentences with TTS into a manifest: just synth --vocabulary data/vocabulary.txt --count 500
synth *ARGS:
    @{{python}} main.py synth "$@"

# mix manifests at a ratio: just mix data/my_voice_train.jsonl data/synthetic_train.jsonl --ratio real=1,synthetic=3
mix +ARGS:
    @{{python}} main.py mix "$@"

# record your own voice prompt by prompt: just record --vocabulary data/vocabulary.txt --count 100
record *ARGS:
    @{{python}} main.py record "$@"

# review what dictate heard (p play, Enter accept, e edit, d discard) into data/corrections.jsonl, to train on
corrections *ARGS:
    @{{python}} main.py corrections "$@"

# dictate live and read what the model hears: just dictate --adapter-dir outputs/NAME/best_adapter --keep (--model DIR: an export)
dictate *ARGS:
    @{{python}} main.py dictate "$@"

# flag bad recordings (silent, quiet, clipped, cut, misread) before training; --drop writes a clean manifest
verify *ARGS:
    @{{python}} main.py verify "$@"

# transcribe and score, base model vs adapter (options in ONE quoted string): just transcribe "--manifest data/my_voice_eval.jsonl --adapter-dir outputs/NAME/adapter --safety builtin"
transcribe ARGS:
    @{{python}} main.py transcribe {{ARGS}}

# best adapter of a run vs its base model on its eval manifest + built-in safety set -> outputs/NAME/eval_results.json
evaluate NAME *ARGS:
    @{{python}} main.py evaluate "$@"

# write outputs/NAME/report.md with PNG curves, from the run's files
report NAME *ARGS:
    @{{python}} main.py report "$@"

# one table across runs: just compare my_voice_tune my_voice_tune_v5
compare +NAMES:
    @{{python}} main.py compare "$@"

# the end-to-end demo on the embedded model, offline (just demo --recipe seed-002: the seed's recipe at full size)
demo *ARGS:
    @{{python}} main.py demo "$@"

# the whole test suite
test *ARGS:
    @{{python}} -m pytest -q "$@"

# run a pipeline of stages unattended: just pipeline --config pipelines/vocab_expansion.toml [--resume or --overwrite]
pipeline *ARGS:
    @{{python}} main.py pipeline "$@"

# merge a run's adapter and write the on-device folder: just export NAME [--quantize none]
export NAME *ARGS:
    @{{python}} main.py export "$@"

# the local web app over the same data and runs (record, data, runs, results, corrections): just studio --outputs outputs/demo
studio *ARGS:
    @{{python}} main.py studio "$@"
