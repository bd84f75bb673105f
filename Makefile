# The two commands of the README: `make audit` and `make test`.
# Both create the virtual environment (.venv) and install flatcheck into it when needed.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.flatcheck-installed
OUT ?= flatcheck-out

.PHONY: audit test install

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@# Headless Chromium renders the HTML report in one test; it is skipped (and says so) without it.
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "note: chromium not installed; the HTML rendering test will be skipped"
	touch $(STAMP)

audit: $(STAMP)
	$(VENV)/bin/flatcheck audit --quick --out $(OUT)

test: $(STAMP)
	$(PY) -m pytest
