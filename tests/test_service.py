"""`wm service`: the rendered systemd unit and launchd agent, and install / status /
uninstall in a temporary HOME.

systemctl, loginctl, launchctl and id are MOCKS here (small scripts on PATH that record
their arguments): no user systemd manager runs on the test machine and no macOS either.
The unit itself is checked by the real `systemd-analyze verify`."""
from __future__ import annotations

import json
import os
import plistlib
import pwd
import re
import shlex
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from wm.base import config
from wm.base.errors import WmError
from wm.base.paths import Paths
from wm.daemon import service
from wm.daemon.service_launchd import render_plist
from wm.daemon.service_spec import service_spec, template_text
from wm.daemon.service_systemd import render_unit

REPO = Path(__file__).resolve().parents[1]
LABEL = "io.wm.recorder"

MOCK = textwrap.dedent(f"""\
    #!{sys.executable}
    # Stand-in for systemctl / loginctl / launchctl / id: records its arguments.
    import json, os, sys
    name, args = os.path.basename(sys.argv[0]), sys.argv[1:]
    with open(os.environ["MOCK_LOG"], "a") as f:
        f.write(json.dumps([name] + args) + "\\n")
    if os.environ.get("MOCK_FAIL") and os.environ["MOCK_FAIL"] in args:
        sys.exit(print("Failed to connect to bus: No medium found", file=sys.stderr) or 1)
    loaded = os.path.join(os.environ["MOCK_STATE"], "loaded")
    if name == "loginctl":
        print(os.environ.get("MOCK_LINGER", "no"))
    elif name == "id":
        print(os.environ.get("MOCK_GROUPS", "tester users"))
    elif name == "systemctl" and "status" in args:
        print("* wm.service - wm, an always-on recorder that learns")
    elif name == "launchctl":
        if args[0] == "bootstrap":
            open(loaded, "w").close()
        elif args[0] == "bootout":
            os.remove(loaded)
        elif args[0] == "print":
            if not os.path.exists(loaded):
                sys.exit(print("Could not find service", file=sys.stderr) or 113)
            print("{LABEL} = {{\\n\\tstate = running\\n\\tpid = 4242\\n"
                  "\\tendpoints = {{\\n\\t\\tstate = active\\n\\t}}\\n}}")
""")


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A temporary HOME with the mock tools first on PATH and WM_HOME set."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("systemctl", "loginctl", "launchctl", "id"):
        (bindir / name).write_text(MOCK)
        (bindir / name).chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("MOCK_LOG", str(tmp_path / "calls.jsonl"))
    monkeypatch.setenv("MOCK_STATE", str(state))
    monkeypatch.setenv("WM_HOME", str(tmp_path / "wm data"))
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "WM_CONFIG", "MOCK_FAIL"):
        monkeypatch.delenv(var, raising=False)
    return h


def calls(home: Path, tool: str | None = None, clear: bool = True) -> list[list[str]]:
    log = Path(os.environ["MOCK_LOG"])
    rows = [json.loads(ln) for ln in log.read_text().splitlines()] if log.exists() else []
    if clear:
        log.unlink(missing_ok=True)
    return [r for r in rows if tool is None or r[0] == tool]


def svc(action: str, platform: str = "linux", dry_run: bool = False) -> int:
    settings = config.load(None)
    return service.run_service(settings, Paths.from_settings(settings), action,
                               dry_run=dry_run, config_path=None, platform=platform)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_the_packaged_templates_are_the_only_ones():
    """One template per service file, inside the package (an installed wheel needs it);
    the top-level systemd/ and launchd/ folders only say where it is."""
    packaged = REPO / "wm" / "daemon" / "templates"
    for folder, name in (("systemd", "wm.service"), ("launchd", f"{LABEL}.plist")):
        assert template_text(name) == (packaged / name).read_text(encoding="utf-8")
        assert sorted(p.name for p in (REPO / folder).iterdir()) == ["README.md"], folder
        readme = (REPO / folder / "README.md").read_text()
        assert f"wm/daemon/templates/{name}" in readme and "wm service install" in readme


def _verify(unit_text: str, tmp_path: Path) -> subprocess.CompletedProcess:
    if shutil.which("systemd-analyze") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is missing (.ci/run installs systemd)")
        pytest.skip("systemd-analyze is missing: apt-get install systemd")
    unit = tmp_path / "unit" / "wm.service"
    unit.parent.mkdir()
    unit.write_text(unit_text)
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime), HOME=str(tmp_path), SYSTEMD_PAGER="")
    return subprocess.run(["systemd-analyze", "--user", "verify", "--man=no", str(unit)],
                          capture_output=True, text=True, env=env, timeout=60)


def test_rendered_unit_passes_systemd_analyze_verify(tmp_path):
    # Awkward but legal paths: a space, a % (a unit specifier) and a $ (a variable).
    data = tmp_path / "my data %n $HOME"
    cfg = tmp_path / "conf $dir" / "wm 100%.yaml"
    cfg.parent.mkdir()
    cfg.write_text("logging:\n  level: debug\n")
    spec = service_spec(Paths(data), cfg, environ={"WM_HOME": str(data)})
    text = render_unit(spec)

    done = _verify(text, tmp_path)
    assert (done.returncode, done.stderr, done.stdout) == (0, "", "")

    assert spec.program == [os.path.abspath(sys.executable), "-m", "wm", "run", "--config", str(cfg)]
    exec_start = next(ln for ln in text.splitlines() if ln.startswith("ExecStart="))
    assert exec_start.startswith(f'ExecStart="{os.path.abspath(sys.executable)}" "-m" "wm" "run"')
    assert '"--config"' in exec_start and "wm 100%%.yaml" in exec_start
    assert "conf $$dir" in exec_start
    assert f'Environment="WM_HOME={tmp_path}/my data %%n $HOME"' in text
    for line in ("Type=notify", "WatchdogSec=60", "Restart=on-failure", "UMask=0077",
                 "NoNewPrivileges=yes", "WantedBy=default.target",
                 "ExecReload=/bin/kill -HUP $MAINPID"):
        assert line in text.splitlines()
    assert re.search(r"@[A-Z_]+@", text) is None


def test_verify_check_catches_a_broken_unit(tmp_path):
    """The check above can fail: an ExecStart that does not exist is reported on stderr."""
    spec = service_spec(Paths(tmp_path), None, environ={},
                        python=str(tmp_path / "no such python"))
    done = _verify(render_unit(spec), tmp_path)
    assert "no such python" in done.stderr


def _unit_values(text: str, key: str) -> list[str]:
    return [ln.split("=", 1)[1] for ln in text.splitlines() if ln.startswith(f"{key}=")]


def test_a_module_planted_in_the_data_root_does_not_run_in_the_service(tmp_path):
    """The rendered unit's ExecStart, run as systemd would (its working directory, its
    environment), starts the real wm even with a `wm/` package and a `structlog.py` in
    the data root, where the service used to run."""
    data = tmp_path / "data"
    (data / "wm").mkdir(parents=True)
    (data / "wm" / "__init__.py").write_text("")
    (data / "wm" / "__main__.py").write_text("print('PLANTED wm ran')\n")
    (data / "structlog.py").write_text("print('PLANTED structlog ran')\nraise SystemExit(99)\n")
    cfg = tmp_path / "wm.yaml"    # no device: the real `wm run` starts, then says so and exits
    cfg.write_text('capture:\n  camera: /nonexistent/cam.mp4\n  microphone: "off"\n')
    text = render_unit(service_spec(Paths(data), cfg, environ={"WM_HOME": str(data)}))
    done = _verify(text, tmp_path)
    assert (done.returncode, done.stderr) == (0, "")

    [cwd] = _unit_values(text, "WorkingDirectory")
    assert not Path(cwd).resolve().is_relative_to(data)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    for line in _unit_values(text, "Environment"):
        env.update(word.split("=", 1) for word in shlex.split(line))
    [exec_start] = _unit_values(text, "ExecStart")
    run = subprocess.run(shlex.split(exec_start), cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=120)
    assert "PLANTED" not in run.stdout + run.stderr
    assert run.returncode == 2 and "wm: nothing to record" in run.stderr
    started = [json.loads(ln)["event"] for ln in (data / "logs" / "wm.jsonl").read_text().splitlines()]
    assert "daemon_starting" in started


def test_rendered_plist_has_every_required_key_with_absolute_paths(tmp_path):
    home = tmp_path / "Users" / "ann"
    data = tmp_path / "wm & <data>"
    cfg = tmp_path / "wm.yaml"
    cfg.write_text("")
    spec = service_spec(Paths(data), cfg, environ={"WM_HOME": str(data)})
    plist = plistlib.loads(render_plist(spec, home))

    assert plist["Label"] == LABEL
    args = plist["ProgramArguments"]
    assert args == [os.path.abspath(sys.executable), "-m", "wm", "run", "--config", str(cfg)]
    assert Path(args[0]).is_absolute() and os.access(args[0], os.X_OK)
    assert plist["RunAtLoad"] is True
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["ProcessType"] in ("Interactive", "Standard")
    logs = home / "Library" / "Logs" / "wm"
    assert plist["StandardOutPath"] == str(logs / "wm.out.log")
    assert plist["StandardErrorPath"] == str(logs / "wm.err.log")
    # Not the data root: `python -m wm` would import a wm/ or structlog.py found there.
    assert plist["WorkingDirectory"] == "/"
    assert plist["EnvironmentVariables"]["PYTHONSAFEPATH"] == "1"
    env = plist["EnvironmentVariables"]
    assert env["WM_HOME"] == str(data)
    assert env["PATH"].split(":")[0] == os.path.dirname(os.path.abspath(sys.executable))
    assert all(Path(p).is_absolute() for p in env["PATH"].split(":"))
    for key in ("StandardOutPath", "StandardErrorPath", "WorkingDirectory"):
        assert Path(plist[key]).is_absolute(), key
    assert "~" not in json.dumps(plist) and re.search(r"@[A-Z_]+@", json.dumps(plist)) is None

    # Without WM_HOME or a config file, neither appears.
    bare = plistlib.loads(render_plist(service_spec(Paths(data), None, {}), home))
    assert "WM_HOME" not in bare["EnvironmentVariables"]
    assert bare["ProgramArguments"] == [os.path.abspath(sys.executable), "-m", "wm", "run"]


def test_linux_install_status_uninstall(home, capfd, monkeypatch):
    unit = home / ".config" / "systemd" / "user" / "wm.service"
    data = Path(os.environ["WM_HOME"])

    assert svc("install") == 0
    out = capfd.readouterr().out
    assert unit.is_file() and _mode(unit) == 0o644
    text = unit.read_text()
    assert f'ExecStart="{os.path.abspath(sys.executable)}" "-m" "wm" "run"' in text
    assert f'Environment="WM_HOME={data}"' in text
    assert data.is_dir()
    assert calls(home, "systemctl") == [
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "enable", "--now", "wm.service"]]
    assert "loginctl enable-linger" in out
    assert "usermod -aG video,audio" in out

    # Again, unchanged: the file is left alone and nothing is reloaded or restarted.
    before = unit.stat().st_mtime_ns
    assert svc("install") == 0
    assert "already up to date" in capfd.readouterr().out
    assert unit.stat().st_mtime_ns == before
    assert calls(home, "systemctl") == [["systemctl", "--user", "enable", "--now", "wm.service"]]

    # Installed from somewhere else (another data root): rewritten, reloaded, restarted.
    monkeypatch.setenv("WM_HOME", str(data.parent / "elsewhere"))
    assert svc("install") == 0
    assert str(data.parent / "elsewhere") in unit.read_text()
    assert calls(home, "systemctl") == [
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "enable", "--now", "wm.service"],
        ["systemctl", "--user", "restart", "wm.service"]]
    monkeypatch.setenv("WM_HOME", str(data))
    assert svc("install") == 0
    calls(home)
    capfd.readouterr()

    assert svc("status") == 0
    out = capfd.readouterr().out
    assert str(unit) in out and "wm.service - wm" in out
    assert calls(home, "systemctl") == [["systemctl", "--user", "--no-pager", "status", "wm.service"]]

    assert svc("restart") == 0
    assert calls(home, "systemctl") == [["systemctl", "--user", "restart", "wm.service"]]

    (data / "memory").mkdir()
    (data / "memory" / "episodic.sqlite").write_bytes(b"precious")
    assert svc("uninstall") == 0
    out = capfd.readouterr().out
    assert not unit.exists()
    assert (data / "memory" / "episodic.sqlite").read_bytes() == b"precious"
    assert str(data) in out
    assert calls(home, "systemctl") == [
        ["systemctl", "--user", "disable", "--now", "wm.service"],
        ["systemctl", "--user", "daemon-reload"]]

    assert svc("status") == 3
    assert "not installed" in capfd.readouterr().out
    with pytest.raises(WmError, match="not installed"):
        svc("start")
    assert calls(home, "systemctl") == []


def test_linux_install_says_nothing_when_lingering_and_in_groups(home, capfd, monkeypatch):
    monkeypatch.setenv("MOCK_LINGER", "yes")
    monkeypatch.setenv("MOCK_GROUPS", "tester video audio")
    assert svc("install") == 0
    out = capfd.readouterr().out
    assert "linger" not in out and "usermod" not in out
    user = pwd.getpwuid(os.getuid()).pw_name
    asked = calls(home)
    assert ["loginctl", "show-user", user, "--property=Linger", "--value"] in asked
    assert ["id", "-Gn", user] in asked


def test_linux_install_explains_a_failing_systemctl(home, monkeypatch):
    monkeypatch.setenv("MOCK_FAIL", "daemon-reload")
    with pytest.raises(WmError) as e:
        svc("install")
    assert "daemon-reload" in str(e.value) and "Failed to connect to bus" in str(e.value)
    assert "enable-linger" in str(e.value)


def test_install_refuses_an_interpreter_that_cannot_import_wm(home, monkeypatch):
    # The venv's base interpreter: real, but wm is installed only in the venv.
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    if sys.prefix == sys.base_prefix or not base.exists():
        pytest.skip("needs a virtual environment and its base interpreter")
    monkeypatch.setattr(sys, "executable", str(base))
    with pytest.raises(WmError, match="No module named 'wm'"):
        svc("install")
    assert not (home / ".config" / "systemd" / "user" / "wm.service").exists()
    assert calls(home, "systemctl") == []


def test_macos_install_status_stop_uninstall(home, capfd, monkeypatch):
    plist = home / "Library" / "LaunchAgents" / f"{LABEL}.plist"
    logs = home / "Library" / "Logs" / "wm"
    data = Path(os.environ["WM_HOME"])
    gui = f"gui/{os.getuid()}"
    target = f"{gui}/{LABEL}"

    assert svc("install", "darwin") == 0
    out = capfd.readouterr().out
    assert plist.is_file() and _mode(plist) == 0o644
    assert logs.is_dir() and data.is_dir()
    agent = plistlib.loads(plist.read_bytes())
    assert agent["ProgramArguments"][0] == os.path.abspath(sys.executable)
    assert agent["StandardErrorPath"] == str(logs / "wm.err.log")
    assert calls(home, "launchctl") == [
        ["launchctl", "print", target],
        ["launchctl", "enable", target],
        ["launchctl", "bootstrap", gui, str(plist)]]
    assert "camera and microphone" in out and os.path.realpath(sys.executable) in out

    before = plist.stat().st_mtime_ns
    assert svc("install", "darwin") == 0
    assert plist.stat().st_mtime_ns == before
    assert calls(home, "launchctl") == [
        ["launchctl", "print", target],
        ["launchctl", "kickstart", target]]

    monkeypatch.setenv("WM_HOME", str(data.parent / "elsewhere"))
    assert svc("install", "darwin") == 0
    assert calls(home, "launchctl") == [
        ["launchctl", "print", target],
        ["launchctl", "bootout", target],
        ["launchctl", "enable", target],
        ["launchctl", "bootstrap", gui, str(plist)]]
    monkeypatch.setenv("WM_HOME", str(data))
    capfd.readouterr()

    assert svc("status", "darwin") == 0
    out = capfd.readouterr().out
    assert "state = running" in out and "pid = 4242" in out and "active" not in out

    assert svc("stop", "darwin") == 0
    assert calls(home, "launchctl")[-1] == ["launchctl", "bootout", target]
    assert svc("status", "darwin") == 3
    assert "not loaded" in capfd.readouterr().out
    assert svc("start", "darwin") == 0
    assert calls(home, "launchctl")[-1] == ["launchctl", "bootstrap", gui, str(plist)]
    assert svc("restart", "darwin") == 0
    assert calls(home, "launchctl")[-1] == ["launchctl", "kickstart", "-k", target]

    (data / "keep.txt").write_text("mine")
    capfd.readouterr()
    assert svc("uninstall", "darwin") == 0
    out = capfd.readouterr().out
    assert not plist.exists() and (data / "keep.txt").read_text() == "mine"
    assert str(data) in out and str(logs) in out
    assert calls(home, "launchctl") == [["launchctl", "print", target],
                                        ["launchctl", "bootout", target]]


def test_dry_run_prints_the_unit_and_commands_and_changes_nothing(home, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-m", "wm", "service", "install", "--dry-run"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    unit = home / ".config" / "systemd" / "user" / "wm.service"
    assert f"# would write {unit} (mode 644):" in done.stdout
    assert "Type=notify" in done.stdout and os.path.abspath(sys.executable) in done.stdout
    assert "# would run: systemctl --user daemon-reload" in done.stdout
    assert "# would run: systemctl --user enable --now wm.service" in done.stdout
    assert not unit.exists()
    assert calls(home, "systemctl") == []
