"""`up` end to end against a stand-in app (fake_app/wsgi.py): gunicorn, the flask CLI, the API, `curl | sh`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.core import LabError
from lab.netns import namespace_pids
from lab.testing import lab_fixture, require_lab

pytestmark = [pytest.mark.lab, require_lab()]

FAKE_APP = Path(__file__).resolve().parent / "fake_app"

blog = lab_fixture("blog", app_dir=FAKE_APP)


def host_config(lab, host: str) -> dict:
    return json.loads((lab.host_dir(host) / "etc/privnet/config.json").read_text())


def test_status_has_what_the_app_allocated(blog):
    status = blog.status()
    assert status["app_url"] == "http://192.0.2.254:8000"
    assert status["admin_token"] and status["phase"] == "up"
    assert [host["overlay_ip"] for host in status["hosts"].values()] == [f"10.99.99.{n}" for n in range(1, 6)]
    assert status["hosts"]["pi0"]["underlay_ip"] == "10.88.88.5"


def test_every_host_ran_its_own_script(blog):
    for name in blog.host_names:
        config = host_config(blog, name)
        assert config["node"]["name"] == name
        assert (blog.host_dir(name) / "etc/privnet/init").read_text() == "none\n"
    rho = host_config(blog, "rho")
    assert rho["node"]["endpoint"] == "192.0.2.2:56560" and rho["node"]["location"] == "Paris, FR"
    assert host_config(blog, "pi0")["node"]["endpoint"] is None
    assert {(link["a"], link["b"]) for link in host_config(blog, "pi0")["links"]} == {("rho", "pi0")}
    assert len(host_config(blog, "rho")["links"]) == 4


def test_network_timers_reached_the_app(blog):
    network = host_config(blog, "bob")["network"]
    assert network == {"stp_hello_time": 1, "stp_max_age": 6, "stp_forward_delay": 2}


def test_agents_keep_running_in_their_hosts(blog):
    for name in blog.host_names:
        assert namespace_pids(blog.netns(name)), f"nothing runs in {name}"
    assert namespace_pids(blog.netns("control")), "gunicorn is not running"


def test_rerun_with_a_fresh_enrollment_and_old_tokens_fail(blog):
    old_command = blog.state["hosts"]["bob"]["enroll_command"]
    blog.enroll(["bob"], fresh=True)
    assert (blog.host_dir("bob") / "etc/privnet/runs").read_text() == "2\n"
    blog.state["hosts"]["bob"]["enroll_command"] = old_command
    with pytest.raises(LabError, match="setup script failed on bob"):
        blog.enroll(["bob"])
    assert "404" in (blog.state_dir / "logs/enroll-bob.log").read_text()
    assert (blog.host_dir("bob") / "etc/privnet/runs").read_text() == "2\n"


def test_api_requests_go_from_the_control_namespace(blog):
    nodes = blog.api().call("GET", "/api/v1/nodes")
    assert [node["name"] for node in nodes] == ["bob", "rho", "vorke", "epsilon", "pi0"]
    status, _ = blog.api().request("POST", "/api/v1/nodes", {"name": "bob"})
    assert status == 409
