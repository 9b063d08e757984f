"""`wm check [--repair]` on a real data root damaged the ways a crash leaves one: a stale
partial write, a queued clip whose files are gone, a clip on disk the queue does not
know, a claim held by a process that no longer exists. `wm check` lists them and exits
1; `--repair` fixes them without touching any committed memory; then it is clean."""
import os
import time

from wm.base import config
from wm.base.queue import COMMITTED, Queue
from wm.demo.synth import make_day

DATE = "2025-01-15"
OLD = time.time() - 2 * 3600


def damaged_root(home):
    settings = config.load()
    clips = make_day(settings, home, DATE, 4, seed=1)
    q = Queue(home.memory_db)
    for c in clips[:3]:
        q.enqueue(c.manifest, str(c.manifest_path.relative_to(home.data)))
    q.mark([clips[0].manifest.id], COMMITTED)
    # a crash mid-write: partial files older than any writer still at work
    stale = [home.clips_dir(DATE) / "20250115T090009Z.mp4.partial", home.state / "status.json.partial"]
    for p in stale:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half")
        os.utime(p, (OLD, OLD))
    fresh = home.clips_dir(DATE) / "20250115T090012Z.wav.partial"    # being written now
    fresh.write_bytes(b"in flight")
    # a crash between a clip's media and its manifest: media nobody will ever queue
    orphan = home.frame(DATE, "20250115T090015Z", 0)
    orphan.write_bytes(b"jpeg")
    os.utime(orphan, (OLD, OLD))
    stale.append(orphan)
    # a queued clip whose files vanished
    gone = clips[1]
    for f in home.clips_dir(DATE).glob(f"{gone.manifest.id}*"):
        f.unlink()
    # a claim by a process that is gone (pid 2**22 + 1 is above any default pid_max)
    q.claim(f"{os.uname().nodename}:{2**22 + 1}:1", 1, 3600)
    q.close()
    return clips, stale, fresh


def test_check_finds_each_problem_and_repair_fixes_them(home, run_wm):
    clips, stale, fresh = damaged_root(home)
    r = run_wm("check")
    assert r.code == 1, r.out + r.err
    for expected in ("stale partial write", "orphan media", "queued clip without files",
                     "clip not queued yet", "claim of a dead process"):
        assert expected in r.out
    assert all(p.exists() for p in stale)             # a check alone changes nothing

    r = run_wm("check", "--repair")
    assert r.code == 0, r.out + r.err
    assert "0 left" in r.out
    assert not any(p.exists() for p in stale) and fresh.exists()
    q = Queue(home.memory_db)
    states = {i.clip_id: i.state for i in q.items()}
    assert q.owners() == []
    q.close()
    assert states[clips[0].manifest.id] == COMMITTED          # committed memory untouched
    assert states[clips[1].manifest.id] == "purged"           # its files were gone
    assert states[clips[3].manifest.id] == "queued"           # found on disk, now queued

    r = run_wm("check")
    assert r.code == 0 and "nothing wrong" in r.out
    # with no wm process running, a fresh partial is a crash's leftover too
    r = run_wm("check", "--grace", "0", "--repair")
    assert r.code == 0 and "stale partial write" in r.out and not fresh.exists()


def test_a_clean_root_is_clean(home, run_wm):
    r = run_wm("check")
    assert r.code == 0 and "nothing wrong" in r.out


def test_a_damaged_model_file_is_found_and_kept_out_of_use(home, run_wm):
    import hashlib

    from wm.learn.versions import all_versions, record_version

    model = home.daily_checkpoint_dir(DATE) / "model-2025-01-15.1.pt"
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_bytes(b"weights")
    record_version(home, "2025-01-15.1", DATE, str(model.relative_to(home.root)), True,
                   sha256=hashlib.sha256(b"weights").hexdigest())
    record_version(home, "2025-01-15.2", DATE, "checkpoints/daily/2025-01-15/gone.pt", True)
    model.write_bytes(b"weighTs")                                     # a flipped bit
    r = run_wm("check")
    assert r.code == 1
    assert "model file checksum mismatch: 2025-01-15.1" in r.out
    assert "model file missing: 2025-01-15.2" in r.out
    assert run_wm("check", "--repair").code == 0
    assert all(v.broken for v in all_versions(home)) and model.exists()   # kept, not deleted
    assert run_wm("check").code == 0


def test_a_damaged_shard_is_found_and_queries_work_again_after_repair(home, run_wm, settings):
    from memory_support import committed_days, settings_for_tests

    from wm.memory.store import Store

    s = settings_for_tests()
    committed_days(home, s, [(DATE, 8, 1)])
    with Store(home) as store:
        shard = next(sh for sh in store.all_shards() if sh.kind == "video")
        vec, _ = store.shard_path(shard)
    vec.write_bytes(vec.read_bytes()[:200])                     # a disk that lost the tail
    clip = sorted(home.clips_dir(DATE).glob("*.json"))[0].stem
    assert run_wm("query", "--clip", clip, "--modality", "video").code != 0
    r = run_wm("check")
    assert r.code == 1 and "damaged memory shard: v1/2025-01-15/video" in r.out
    assert run_wm("check", "--repair").code == 0
    assert run_wm("check").code == 0
    r = run_wm("query", "--clip", clip)                          # the clip's other vectors
    assert r.code == 0, r.err
