"""Fixtures shared by the toolkit's tests (tests/) and the research workbench's (research/tests/)."""

pytest_plugins = ("shared_fixtures",)
