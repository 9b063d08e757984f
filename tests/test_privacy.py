"""Private by default, checked the way a user would: real `wm ingest`, `wm record` (loopback
camera and microphone) and `wm pause` processes under the usual umask 022, then every
file under the data root is looked at. And a camera password never reaches a file, a log
line or the manifests, whether it comes from the settings file, WM_CAMERA_PASSWORD or
(with a warning) the command line."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import mediagen as mg
import pytest
from loopback import MjpegServer, PulseServer, require_tools

from wm.base.manifest import Manifest
from wm.base.paths import Paths
from wm.base.redact import MASK, camera_url, has_secret, redact, with_password

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
DATE = "2025-01-15"
PASSWORD = "Sup3r:s3cr@t"   # a ':' and an '@' in it: the URL must still be read right
USER = "viewer"


@pytest.fixture(scope="module")
def pulse(tmp_path_factory):
    require_tools("pulseaudio", "pactl", "paplay", portaudio=False)
    server = PulseServer(tmp_path_factory.mktemp("pulse")).start()
    try:
        require_tools(portaudio=True)
        yield server
    finally:
        server.stop()


def wm_umask_022(*argv, env: dict | None = None,
                 timeout: float = 120) -> subprocess.CompletedProcess:
    """`wm ARGS` as a user with the common umask 022 starts it."""
    def loose():
        os.umask(0o022)

    return subprocess.run([sys.executable, "-m", "wm", *map(str, argv)], cwd=REPO,
                          env=dict(os.environ, **(env or {})), preexec_fn=loose,
                          capture_output=True, text=True, timeout=timeout)


def loose_modes(root: Path) -> list[str]:
    """Everything under `root` (itself included) not 0700 (folders) or 0600 (files)."""
    bad = []
    for p in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(p.lstat().st_mode)
        want = 0o700 if p.is_dir() else 0o600
        if not p.is_symlink() and mode != want:
            bad.append(f"{p.relative_to(root.parent)} {mode:o}")
    return bad


def test_everything_ingest_record_and_pause_create_is_private(pulse, home, tmp_path):
    src = mg.write(tmp_path / "holiday.mp4", mg.Spec(seconds=4.0))
    r = wm_umask_022("ingest", src, "--date", DATE)
    assert r.returncode == 0, r.stderr
    with MjpegServer(fps=10) as camera:
        r = wm_umask_022("record", "--camera", camera.url, "--mic", "pulse", "--duration", "4")
    assert r.returncode == 0, r.stderr
    assert wm_umask_022("pause", "--for", "1m").returncode == 0
    files = [p for p in home.root.rglob("*") if p.is_file()]
    # the database, the log, the state files, clips of both kinds are all there
    names = {p.name for p in files}
    assert {"wm.jsonl", "paused.json", "ingested.jsonl"} <= names
    assert len([p for p in files if p.suffix == ".json" and "clips" in p.parts]) >= 3
    assert loose_modes(home.root) == []


# -- credentials ----------------------------------------------------------------------------

@pytest.fixture
def ip_camera():
    """An MJPEG camera that wants a user name and password."""
    with MjpegServer(fps=10, size=(320, 240), auth=(USER, PASSWORD)) as server:
        yield server


def secret_url(camera: MjpegServer, password: str | None) -> str:
    who = USER if password is None else f"{USER}:{password}"
    return f"http://{who}@127.0.0.1:{camera.port}/stream"


def leaks(root: Path, secret: str) -> list[str]:
    """Files under `root` whose bytes hold the secret (as typed or percent-encoded)."""
    from urllib.parse import quote

    forms = {secret.encode(), quote(secret, safe="").encode()}
    return [str(p) for p in root.rglob("*") if p.is_file()
            and any(f in p.read_bytes() for f in forms)]


def recorded_video(paths: Paths) -> list[Manifest]:
    ms = [Manifest.read(p) for p in paths.clips_root.rglob("*.json")]
    return [m for m in ms if m.frames]


@pytest.mark.parametrize("route", ["settings file", "environment"])
def test_a_camera_password_reaches_the_camera_and_no_file(home, tmp_path, ip_camera, route):
    url_in_config = secret_url(ip_camera, PASSWORD if route == "settings file" else None)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"capture:\n  camera: '{url_in_config}'\n  microphone: none\n")
    os.chmod(cfg, 0o600)
    env = {"WM_CAMERA_PASSWORD": PASSWORD} if route == "environment" else {}
    r = wm_umask_022("record", "--duration", "4", "--config", cfg, env=env)
    assert r.returncode == 0, r.stderr
    assert recorded_video(home), "the camera let us in: the password was used"
    assert PASSWORD not in r.stdout + r.stderr
    assert leaks(home.root, PASSWORD) == []
    ms = recorded_video(home)
    assert all(f"{USER}@127.0.0.1" in m.source.name or f"{USER}:{MASK}@" in m.source.name
               for m in ms)
    log = home.log_file.read_text()
    assert f"127.0.0.1:{ip_camera.port}" in log   # the camera is named, without its password


def test_a_password_on_the_command_line_is_used_redacted_and_warned_about(home, ip_camera):
    r = wm_umask_022("record", "--camera", secret_url(ip_camera, PASSWORD), "--mic", "none",
                     "--duration", "4")
    assert r.returncode == 0, r.stderr
    assert recorded_video(home)
    warning = [line for line in r.stderr.splitlines() if "visible to other users" in line]
    assert len(warning) == 1 and "WM_CAMERA_PASSWORD" in warning[0]
    assert PASSWORD not in r.stdout + r.stderr
    assert leaks(home.root, PASSWORD) == []
    assert f"{USER}:{MASK}@127.0.0.1" in r.stdout   # "recording into ... (camera: ...)"


@pytest.mark.parametrize("text, want", [
    ("rtsp://admin:pw@192.168.1.20:554/stream1", "rtsp://admin:***@192.168.1.20:554/stream1"),
    ("camera rtsp://u:p@ss@cam/x, microphone default",
     "camera rtsp://u:***@cam/x, microphone default"),
    ("http://cam/video.cgi?user=admin&pwd=hunter2&res=1",
     "http://cam/video.cgi?user=admin&pwd=***&res=1"),
    ("rtsp://admin@cam/stream", "rtsp://admin@cam/stream"),
    ("0", "0"),
    ("/home/me/videos/a:b@c.mp4", "/home/me/videos/a:b@c.mp4"),
])
def test_redact(text, want):
    assert redact(text) == want
    assert has_secret(text) == (text != want)


def test_the_password_goes_into_a_url_naming_a_user_only():
    assert with_password("rtsp://admin@cam/s", "p@ss:/") == "rtsp://admin:p%40ss%3A%2F@cam/s"
    assert with_password("rtsp://admin:old@cam/s", "new") == "rtsp://admin:old@cam/s"
    assert with_password("rtsp://cam/s", "new") == "rtsp://cam/s"
    assert camera_url("rtsp://admin@cam/s", {"WM_CAMERA_PASSWORD": "x"}) == "rtsp://admin:x@cam/s"
    assert camera_url("0", {"WM_CAMERA_PASSWORD": "x"}) == "0"


def test_a_camera_that_cannot_be_reached_is_named_without_its_password():
    from wm.capture.camera import open_error

    msg = open_error("rtsp://admin:hunter2@10.0.0.9/live")
    assert "hunter2" not in msg and "rtsp://admin:***@10.0.0.9/live" in msg
