"""Fixtures shared by the lab tests: a triangle whose agents report every REPORT_INTERVAL seconds.

Module-scoped, so each test module that asks for it gets a lab of its own.
"""

from __future__ import annotations

import pytest

from lab.core import Lab
from lab.testing import lab_fixture

REPORT_INTERVAL = 2  # seconds; the smallest the app takes is 1

bare_triangle = lab_fixture("triangle", enroll=False, name="bare_triangle")


@pytest.fixture(scope="module")
def triangle(bare_triangle: Lab) -> Lab:
    """The triangle, enrolled after its report interval was set to REPORT_INTERVAL."""
    network = bare_triangle.api().call("PATCH", "/api/v1/network", {"report_interval": REPORT_INTERVAL})
    assert network["report_interval"] == REPORT_INTERVAL
    bare_triangle.enroll()
    bare_triangle.wait_for_overlay()
    return bare_triangle
