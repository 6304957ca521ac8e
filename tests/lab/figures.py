"""The figures a suite prints at the end of its run (tests/chaos, tests/remote): each test records
lines with its ``figures`` fixture, and the suite's ``pytest_terminal_summary`` shows them in a
section of their own. They travel in the test reports' user properties, so that they also reach
the end of a run under pytest-xdist, whose workers' own output pytest does not show."""

import pytest


def figures_fixture(suite):
    """A ``figures`` fixture: ``figures(line)`` records a line for the "<suite> figures" section."""
    @pytest.fixture
    def figures(request):
        def record(line):
            request.node.user_properties.append((suite, line))
        return record
    return figures


def show_figures(terminalreporter, suite):
    """Write the "<suite> figures" section, each line after its test's name; return the lines as
    (test name, line)."""
    reports = [report for report in terminalreporter.getreports('passed') + terminalreporter.getreports('failed')
               if report.when == 'call']
    lines = [(report.nodeid.rsplit('::', 1)[-1], value)
             for report in reports for name, value in report.user_properties if name == suite]
    if lines:
        terminalreporter.section('%s figures' % suite)
        for test, line in lines:
            terminalreporter.write_line('%s: %s' % (test, line))
    return lines
