"""The single-instance lock of `wm run` moved to wm.base.lock (`wm record`, in capture,
checks it too); this name stays for callers that import it from here."""
from wm.base.lock import AlreadyRunning, acquire, holder, release  # noqa: F401
