"""Claims: a file created exclusively that says who is doing a piece of work, so that nobody else does it.

A run of a sweep (`<run>.lock`) and a results folder's baseline probe (`baseline.lock`) are claimed
before they are computed and released when that ends, whatever the outcome. This is what keeps two
sweeps racing on one folder, jobs starting together, or a re-queued job from doing the same work
twice. A claim is created with O_CREAT | O_EXCL (atomic on local file systems and NFS v3 or later)
and names its holder: host, pid, executor, job id, when it was taken and, for a job with a time
limit, when it expires.

A claim is stale, and taken over, when (1) it names the claimer's own job id (a re-queued job
restarting), (2) it was taken on this host by a process that no longer exists, or (3) it has
expired; an unreadable claim (its holder is writing it, or died doing so) is stale after
CLAIM_GRACE_S. A claim from another host without an expiry is never taken over: delete the file
once its holder is known to be gone.

This module sits below `vitcf.engine.runner`, `vitcf.engine.executors` and `vitcf.engine.sweep` and imports none of them.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import time
import uuid
from pathlib import Path

CLAIM_GRACE_S = 60  # an unreadable claim is being written for this long at most; older, it is debris
CLOCK_MARGIN_MIN = 10  # added to a claim's expiry: hosts' clocks differ


def lock_of(target) -> Path:
    """The claim file of `target`: a path, or anything with a `lock` path (a sweep's run)."""
    return Path(getattr(target, "lock", target))


def claim(target, job: dict | None = None, time_limit_min: float | None = None) -> dict | None:
    """Take `target`'s claim (see `lock_of`): None once it is ours, else the live holder that has it.

    `job` describes the executor's job taking it ({"executor", "id", ...}; None inline);
    `time_limit_min` is that job's time limit, after which the claim expires. A stale claim is taken
    over; if another claimer takes it over first, theirs is the live one.
    """
    lock = lock_of(target)
    now = dt.datetime.now(dt.timezone.utc)
    expires = None if time_limit_min is None else now + dt.timedelta(minutes=time_limit_min + CLOCK_MARGIN_MIN)
    mine = {
        "run": getattr(target, "name", None) or lock.stem, "host": socket.gethostname(), "pid": os.getpid(),
        "executor": job["executor"] if job else "inline", "job_id": job["id"] if job else None,
        "claimed_at": now.isoformat(timespec="seconds"),
        "expires_at": None if expires is None else expires.isoformat(timespec="seconds"),
        "token": uuid.uuid4().hex,
    }
    for _ in range(3):  # create; or judge the holder, take a stale claim over and create again
        if _create_exclusive(lock, mine):
            return None
        holder = read_claim(lock)
        if holder is None:  # released between our two looks
            continue
        if not claim_is_stale(holder, mine["job_id"]):
            return holder
        _take_over(lock, holder)
    return read_claim(lock) or {"unreadable": True}


def release(target, job: dict | None = None) -> None:
    """Remove `target`'s claim if this process, or `job`, holds it; anyone else's claim stays."""
    lock = lock_of(target)
    holder = read_claim(lock)
    if holder is None:
        return
    ours = (holder.get("host"), holder.get("pid")) == (socket.gethostname(), os.getpid())
    if ours or (job is not None and holder.get("job_id") == job["id"]):
        _take_over(lock, holder)


def read_claim(path: Path) -> dict | None:
    """The holder a claim names; None when there is no claim. A claim that cannot be read (its
    holder is writing it, or died doing so) reads as {"unreadable": True, "mtime": ...}."""
    path = lock_of(path)
    try:
        text, mtime = path.read_text(), path.stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        holder = json.loads(text)
    except json.JSONDecodeError:
        holder = None
    return holder if isinstance(holder, dict) else {"unreadable": True, "mtime": mtime}


def claim_is_stale(holder: dict, job_id: str | None = None) -> bool:
    """Whether a claim may be taken over by a claimer running as `job_id` (see the module docstring)."""
    if holder.get("unreadable"):
        return time.time() - holder.get("mtime", 0) > CLAIM_GRACE_S
    if job_id is not None and holder.get("job_id") == job_id:
        return True
    if holder.get("host") == socket.gethostname() and not _alive(holder.get("pid")):
        return True
    try:
        expires = dt.datetime.fromisoformat(holder["expires_at"]) if holder.get("expires_at") else None
    except (TypeError, ValueError):  # not written by `claim`: judged by its host and pid alone
        expires = None
    return expires is not None and expires < dt.datetime.now(dt.timezone.utc)


def describe_holder(holder: dict) -> str:
    if holder.get("unreadable"):
        return "an unreadable claim"
    job = f"{holder.get('executor')} job {holder['job_id']}" if holder.get("job_id") else "an inline sweep"
    expiry = f", expires {holder['expires_at']}" if holder.get("expires_at") else ""
    return f"{job} on {holder.get('host')} (pid {holder.get('pid')}, since {holder.get('claimed_at')}{expiry})"


def _create_exclusive(path: Path, holder: dict) -> bool:
    try:  # 0666 less the umask, like any file the user writes: a group sharing the folder can read it
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        json.dump(holder, handle, indent=2, sort_keys=True)
    return True


def _take_over(path: Path, judged: dict) -> None:
    """Remove the claim at `path` if it is still the one judged; a claim taken meanwhile is put back."""
    aside = path.with_name(f"{path.name}.{uuid.uuid4().hex}")
    try:
        os.rename(path, aside)  # atomic: of two claimers taking over, one gets the file
    except FileNotFoundError:
        return
    try:
        if read_claim(aside) != judged:
            try:
                os.link(aside, path)  # someone's fresh claim: give it back, unless a newer one exists
            except FileExistsError:
                pass
    finally:
        aside.unlink(missing_ok=True)


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
