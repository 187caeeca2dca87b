"""The studio: one local web page for the whole loop (record, review data, train, compare, correct).

Every page reads and writes the same manifests and run folders as the CLI and calls the same
library functions; long work runs as the CLI's own background runs, so `status` and the Runs
page always agree. Starlette + Jinja templates + htmx (vendored under static/: no build step, no CDN).
"""
