"""One module per CLI command; each defines `register(app)`.

cli.py discovers the modules here, so adding a command never touches cli.py.
Only commands that work are registered.
"""
