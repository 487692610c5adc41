import pytest

from tests.web.support import web

__all__ = ["web"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # The browser tests keep a screenshot of a failure (tests/web/browser.py).
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)
