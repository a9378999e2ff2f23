"""End-to-end tests: the provider and the demo apps as real processes, a real
browser, a real SMTP server and a certified RP library (DESIGN.md, "Tests").

A package, so that its conftest is imported as `e2e.conftest` and never takes
the place of `tests/conftest.py` in sys.modules (tests/rp.py imports that one)."""
