"""Reports: terminal (rich), JSON, Markdown, HTML. Measures never print; these do."""
