"""Host checks (pytest-testinfra over SSH): is each call server what it should be?"""
