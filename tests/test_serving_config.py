"""The reverse proxy's configuration that `python -m core serve` writes: valid for nginx, with session affinity,
websockets and the upload limit."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from core.serving.launcher import nginx_config, nginx_path, worker_user


def test_the_generated_configuration_keeps_a_browser_on_one_process(tmp_path: Path) -> None:
    text = nginx_config(app_ports=[9101, 9102], listen="127.0.0.1:9100", run_dir=tmp_path, max_upload_mb=50,
                        user=worker_user())
    assert re.search(r"@[A-Z_]+@", text) is None  # every field filled in
    assert "        server 127.0.0.1:9101 max_fails=0;\n        server 127.0.0.1:9102 max_fails=0;\n" in text
    # Affinity by a cookie nginx sets, websockets upgraded, uploads as large as the app processes take.
    for line in ("hash $synthloop_route consistent;", "add_header Set-Cookie $synthloop_route_cookie;",
                 "proxy_set_header Upgrade $http_upgrade;", "proxy_set_header Connection $connection_upgrade;",
                 "client_max_body_size 50m;", "listen 127.0.0.1:9100;", f"pid {tmp_path}/nginx.pid;"):
        assert line in text, line
    nginx = nginx_path()
    if nginx is None:
        pytest.skip("nginx is not installed (apt-get install nginx; .ci/run does it)")
    config = tmp_path / "nginx.conf"
    config.write_text(text)
    checked = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(config)],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr
    assert "syntax is ok" in checked.stderr
