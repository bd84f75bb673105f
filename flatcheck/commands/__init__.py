"""One module per CLI command: options -> config -> run -> view. cli.py lists them.

options.py declares every option once, in groups; a measure command is `measure_command`:
the audit with the other measures skipped.
"""
