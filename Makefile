# Weekly Wrapped. Two commands matter: `make demo` and `make test`.
SHELL := /bin/bash
STATE ?= $(or $(WRAPPED_STATE_DIR),$(CURDIR)/.local)
VENV := $(STATE)/venv
WRAPPED := $(VENV)/bin/wrapped

.PHONY: help install demo test up down status logs bench

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

install:  ## install everything (PostgreSQL, Java, venvs) if missing
	@scripts/bootstrap.sh

demo: install  ## set up, start the stack and run the pipeline to a delivered e-mail
	@$(WRAPPED) demo

test: install  ## run the whole test suite on the real services
	@$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

up: install  ## start the local stack
	@$(WRAPPED) up

down:  ## stop everything the stack started
	@$(WRAPPED) down

status:  ## show what runs
	@$(WRAPPED) status

logs:  ## show a service's log: make logs NAME=kafka
	@$(WRAPPED) logs $(NAME)
