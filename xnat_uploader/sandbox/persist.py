"""Saving and loading the sandbox's metadata, so ``xnat-uploader sandbox --data DIR`` can be restarted.

The files are on disk already; what lives only in memory (projects, subjects, experiments,
prearchive rows, inventory checksums, ID counters) is written to ``DIR/state.json`` when the
server stops and read back when a server starts on the same folder. Paths are stored relative to
the data folder. Users, faults and settings are not saved: they come from the command line.

File digests are computed lazily (:meth:`StoredFile.digest`): one not computed yet is saved as
``""`` and computed from the file after the restart. A scan's ``instances`` (every copy received
per SOP UID) name a copy still in the scan as ``{"file": name}`` so it stays that very file after
loading; a copy no longer stored is saved as its digest (computed before it was overwritten).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from xnat_uploader.sandbox.store import (
    Content,
    Experiment,
    PrearcSession,
    Project,
    Resource,
    Scan,
    Store,
    StoredFile,
    Subject,
)

STATE_FILE = "state.json"
FORMAT_VERSION = 1


def save(store: Store) -> Path:
    """Write ``state.json`` atomically (a temp file, then rename)."""
    root = store.data_dir
    with store.lock:
        state = {
            "format": FORMAT_VERSION,
            "counters": dict(store._counters),
            "projects": [_project(p, root) for p in store.projects.values()],
            "subjects": [_plain(s, root) for s in store.subjects.values()],
            "experiments": [_plain(e, root) for e in store.experiments.values()],
            "prearchive": [_plain(s, root) for s in store.prearchive.values()],
        }
    path = root / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)
    return path


def load(store: Store) -> bool:
    """Read ``state.json`` if the folder has one; returns whether anything was loaded."""
    root = store.data_dir
    path = root / STATE_FILE
    if not path.exists():
        return False
    state = json.loads(path.read_text())
    if state.get("format") != FORMAT_VERSION:
        return False
    with store.lock:
        store._counters.update(state["counters"])
        for data in state["projects"]:
            data["resources"] = {k: _resource(v, root) for k, v in data["resources"].items()}
            store.projects[data["id"]] = Project(**data)
        for data in state["subjects"]:
            data["resources"] = {k: _resource(v, root) for k, v in data["resources"].items()}
            store.subjects[data["id"]] = Subject(**data)
        for data in state["experiments"]:
            data["content"] = _content(data["content"], root)
            store.experiments[data["id"]] = Experiment(**data)
        for data in state["prearchive"]:
            data["content"] = _content(data["content"], root)
            data["touched"] = 0.0  # monotonic clocks do not survive a restart
            session = PrearcSession(**data)
            store.prearchive[(session.project, session.timestamp, session.folder)] = session
    return True


def _plain(obj: Any, root: Path) -> Any:
    """Dataclasses -> dicts, paths -> text relative to ``root``."""
    if isinstance(obj, Scan):
        data = {f.name: _plain(getattr(obj, f.name), root) for f in dataclasses.fields(obj) if f.name != "instances"}
        data["instances"] = {sop: [_copy(obj, c) for c in copies] for sop, copies in obj.instances.items()}
        return data
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name), root) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: _plain(v, root) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v, root) for v in obj]
    if isinstance(obj, Path):
        return obj.relative_to(root).as_posix()
    return obj


def _copy(scan: Scan, stored: StoredFile) -> str | dict:
    """One received copy: a reference to the scan's file, or the digest of one no longer stored."""
    if scan.files.get(stored.name) is stored:
        return {"file": stored.name}
    return stored.digest()


def _project(project: Project, root: Path) -> dict:
    return _plain(project, root)


def _stored(data: dict, root: Path) -> StoredFile:
    return StoredFile(**{**data, "path": root / data["path"]})


def _gone(digest: str, sop_uid: str, scan: dict) -> StoredFile:
    """A copy no longer on disk (or any copy in a state.json written before digests were lazy)."""
    return StoredFile("", Path(), 0, digest, sop_uid, scan["series_uid"])


def _resource(data: dict, root: Path) -> Resource:
    files = {k: _stored(v, root) for k, v in data.pop("files").items()}
    return Resource(**data, files=files)


def _content(data: dict, root: Path) -> Content:
    scans = {}
    for key, scan in data.pop("scans").items():
        files = {k: _stored(v, root) for k, v in scan.pop("files").items()}
        resources = {k: _resource(v, root) for k, v in scan.pop("resources").items()}
        instances = {
            sop: [files[c["file"]] if isinstance(c, dict) else _gone(c, sop, scan) for c in copies]
            for sop, copies in scan.pop("instances").items()
        }
        scans[key] = Scan(**scan, files=files, resources=resources, instances=instances)
    resources = {k: _resource(v, root) for k, v in data.pop("resources").items()}
    return Content(**{**data, "dir": root / data["dir"]}, scans=scans, resources=resources)
