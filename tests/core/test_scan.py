"""The scanner finds exactly what was written, reports every odd case, streams, and cancels promptly."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.dicomgen import make_odd_corpus, write_archives, write_corpus, write_dicomdir, write_one
from xnat_uploader.core.dicom import scan as scan_module
from xnat_uploader.core.dicom.reader import DICOMDIR_REASON
from xnat_uploader.core.dicom.scan import iter_scan, scan_paths
from xnat_uploader.core.errors import Cancelled


def _reasons(result) -> dict[str, str]:
    return {r.display_path: r.reason for r in result.rejected}


@pytest.mark.parametrize("layout", ["nested", "flat"])
def test_corpus_gives_exactly_the_written_instances(tmp_path, layout):
    written = write_corpus(
        tmp_path, layout=layout, patients=2, studies_per_patient=2, series_per_study=2, instances_per_series=3
    )
    result = scan_paths([tmp_path])
    assert sorted(r.sop_instance_uid for r in result.instances) == sorted(w.sop_instance_uid for w in written)
    by_uid = {r.sop_instance_uid: r for r in result.instances}
    for w in written:
        record = by_uid[w.sop_instance_uid]
        assert (record.path, record.size, record.series_uid, record.study_uid, record.patient_id) == (
            str(w.path),
            w.size,
            w.series_uid,
            w.study_uid,
            w.patient_id,
        )
    assert result.rejected == []
    assert result.progress.done
    assert result.progress.files_seen == len(written)
    assert result.progress.bytes_seen == sum(w.size for w in written)
    # Repeated header strings are shared, not copied per instance.
    series = {}
    for r in result.instances:
        assert series.setdefault(r.series_uid, r.series_uid) is r.series_uid


def test_odd_corpus(tmp_path):
    odd = make_odd_corpus(tmp_path)
    result = scan_paths([tmp_path])
    reasons = _reasons(result)
    for key, path in odd.bad.items():
        assert str(path) in reasons, key
        assert reasons[str(path)], key
    assert reasons[str(odd.bad["zero_byte"])] == "empty file (0 bytes)"
    assert reasons[str(odd.bad["truncated"])] == "truncated DICOM file: header ends early"
    assert reasons[str(odd.bad["text"])] == "not a DICOM file (text)"
    assert reasons[str(odd.bad["pdf"])] == "not a DICOM file (PDF document)"
    # The symlink loop is reported once and its folder's file is scanned once.
    loops = [r for r in result.rejected if "loop" in r.reason]
    assert [r.path for r in loops] == [str(odd.loop)]
    # The DICOMDIR is read, not uploaded; its files (also reached by the walk) are scanned once.
    assert reasons[str(odd.dicomdir)] == DICOMDIR_REASON
    paths = [r.path for r in result.instances]
    assert len(paths) == len(set(paths))
    good = {str(p) for p in odd.good}
    assert good <= set(paths)
    cd_files = [p for p in paths if p.startswith(str(odd.dicomdir.parent))]
    assert len(cd_files) == 2
    assert len(result.instances) == len(good) + 2
    assert str(odd.deep) in paths
    assert any("Ünïcødé_名前" in p for p in paths)
    names = {r.patient_name for r in result.instances}
    assert "Müller^Jürgen" in names
    # Accepted odd files keep their real transfer syntax (big endian and deflated went through pydicom).
    syntaxes = {Path(r.path).name: r.transfer_syntax for r in result.instances}
    assert syntaxes["big_endian.dcm"] == "1.2.840.10008.1.2.2"
    assert syntaxes["deflated.dcm"] == "1.2.840.10008.1.2.1.99"
    assert syntaxes["jpeg.dcm"] == "1.2.840.10008.1.2.4.50"


def test_dicomdir_given_directly(tmp_path):
    dicomdir = write_dicomdir(tmp_path / "cd", instances=3)
    (tmp_path / "cd" / "notes.txt").write_text("not listed")
    result = scan_paths([dicomdir])
    assert len(result.instances) == 3
    assert _reasons(result) == {str(dicomdir): DICOMDIR_REASON}  # only the listed files are read


def test_same_file_twice_is_scanned_once(tmp_path):
    written = write_corpus(tmp_path / "c", patients=1, series_per_study=1, instances_per_series=3)
    one = written[0].path
    link = tmp_path / "link.dcm"
    link.symlink_to(one)
    result = scan_paths([one, tmp_path / "c", one, link, tmp_path / "c"])
    assert sorted(r.sop_instance_uid for r in result.instances) == sorted(w.sop_instance_uid for w in written)
    assert scan_paths([tmp_path / "missing"]).rejected[0].reason.startswith("path not found")


def test_archives_scanned_in_place(tmp_path):
    written = write_corpus(tmp_path / "c", patients=1, series_per_study=2, instances_per_series=2)
    zpath, tpath = write_archives(tmp_path / "a", written)
    for mode, suffix in (("w:bz2", ".tar.bz2"), ("w:xz", ".tar.xz"), ("w", ".tar")):
        with tarfile.open(tmp_path / "a" / f"more{suffix}", mode) as t:
            t.add(written[0].path, "one.dcm")
    before = sorted(p.name for p in (tmp_path / "a").iterdir())
    result = scan_paths([tmp_path / "a"])
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == before  # nothing extracted
    members = {(Path(r.path).name, r.member) for r in result.instances}
    uids = sorted(r.sop_instance_uid for r in result.instances if r.path == str(zpath))
    assert uids == sorted(w.sop_instance_uid for w in written)
    assert len([m for m in members if m[0] == "export.tar.gz"]) == len(written)
    assert {("more.tar.bz2", "one.dcm"), ("more.tar.xz", "one.dcm"), ("more.tar", "one.dcm")} <= members
    assert all(r.member for r in result.instances)
    assert _reasons(result) == {f"{zpath}!README.txt": "not a DICOM file (text)"}
    # A damaged archive is reported, never fatal.
    (tmp_path / "b").mkdir()
    data = tpath.read_bytes()
    (tmp_path / "b" / "cut.tar.gz").write_bytes(data[: len(data) // 2])
    damaged = scan_paths([tmp_path / "b"])
    assert len(damaged.instances) < len(written)
    assert [r.reason for r in damaged.rejected if not r.member] == [
        "damaged or cut tar archive: members after this point were not read"
    ]


def _many_files(root: Path, n: int) -> Path:
    """``n`` small DICOM files, fast: one written by pydicom, the rest byte copies."""
    first = write_one(root / "f00000.dcm")
    data = first.read_bytes()
    for i in range(1, n):
        (root / f"f{i:05d}.dcm").write_bytes(data)
    return root


@pytest.mark.parametrize("workers", [1, 2])
def test_batches_arrive_during_the_scan(tmp_path, workers, monkeypatch):
    _many_files(tmp_path, 2500)
    if workers > 1:
        monkeypatch.setattr(scan_module, "SMALL_SCAN", 500)  # this test is about the pool path
        assert scan_module._PoolStarter.get(workers).ready.wait(30)
    from_pool = []
    real_add = scan_module._Scan.add_result

    def add_result(self, path, result):
        if result[0] == "i" and type(result[1]) is tuple:  # workers send tuples, this process records
            from_pool.append(path)
        real_add(self, path, result)

    monkeypatch.setattr(scan_module._Scan, "add_result", add_result)
    batches = list(iter_scan([tmp_path], batch_interval=0.005, workers=workers))
    assert bool(from_pool) == (workers > 1)
    assert len(batches) >= 3
    assert not any(b.progress.done for b in batches[:-1])
    assert batches[-1].progress.done
    seen = [b.progress.files_seen for b in batches]
    assert seen == sorted(seen)
    assert 0 < seen[0] < 2500 or 0 < seen[1] < 2500  # progress before the end, not only at it
    assert sum(len(b.instances) for b in batches) == 2500 == batches[-1].progress.instances
    assert batches[-1].progress.files_per_second > 0


@pytest.mark.parametrize("workers", [1, 2])
def test_cancel_takes_effect_quickly(tmp_path, workers, monkeypatch):
    _many_files(tmp_path, 2500)
    cancel = threading.Event()
    if workers > 1:
        monkeypatch.setattr(scan_module, "SMALL_SCAN", 500)  # this test is about the pool path
        assert scan_module._PoolStarter.get(workers).ready.wait(30)
    state = {"seen": 0, "cancelled_at": 0.0}

    def consume() -> None:
        for batch in iter_scan([tmp_path], cancel=cancel, workers=workers, batch_interval=0.01):
            state["seen"] += len(batch.instances)
            if not cancel.is_set() and state["seen"]:
                cancel.set()  # mid-scan: the first instances have arrived
                state["cancelled_at"] = time.monotonic()

    with pytest.raises(Cancelled):
        consume()
    assert 0 < time.monotonic() - state["cancelled_at"] < 1.0
    assert state["seen"] < 2500


def test_cancel_from_another_thread(tmp_path):
    _many_files(tmp_path, 2500)
    cancel = threading.Event()
    threading.Timer(0.02, cancel.set).start()
    start = time.monotonic()
    with pytest.raises(Cancelled):
        scan_paths([tmp_path, tmp_path], cancel=cancel, workers=1)
    assert time.monotonic() - start < 1.0


def _scan_as_nobody(root: Path) -> dict:
    """Scan ``root`` in a forked child that has dropped to uid/gid 65534 ("nobody").

    Root reads through chmod 000, so the permission case needs another user. The child is forked
    rather than exec'd: the interpreter may live under a folder "nobody" cannot enter.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            r = scan_paths([root], workers=1)
            found = {"instances": [x.path for x in r.instances], "rejected": {x.path: x.reason for x in r.rejected}}
            with os.fdopen(write_end, "w") as out:
                json.dump(found, out)
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return json.loads(data)


def test_unreadable_folder_and_file_are_reported():
    root = Path(tempfile.mkdtemp(prefix="scan-perm-"))
    try:
        good = write_one(root / "ok" / "good.dcm")
        locked_file = write_one(root / "ok" / "locked.dcm", seed=7)
        write_one(root / "closed" / "hidden.dcm", seed=8)
        for p in (root, root / "ok"):
            p.chmod(0o755)
        good.chmod(0o644)
        locked_file.chmod(0o000)
        (root / "closed").chmod(0o000)
        if os.geteuid() == 0:
            found = _scan_as_nobody(root)
        else:
            r = scan_paths([root], workers=1)
            found = {"instances": [x.path for x in r.instances], "rejected": {x.path: x.reason for x in r.rejected}}
        assert found["instances"] == [str(good)]
        assert found["rejected"] == {
            str(root / "closed"): "folder cannot be read (permission denied)",
            str(locked_file): "file cannot be read (permission denied)",
        }
    finally:
        (root / "closed").chmod(0o755)
        shutil.rmtree(root)


def test_dicomdir_with_a_missing_file(tmp_path):
    dicomdir = write_dicomdir(tmp_path / "cd", instances=3)
    referenced = sorted(p for p in (tmp_path / "cd").rglob("*") if p.is_file() and p.name != "DICOMDIR")
    referenced[0].unlink()
    result = scan_paths([dicomdir])
    assert len(result.instances) == 2
    reasons = _reasons(result)
    assert reasons.pop(str(dicomdir)) == DICOMDIR_REASON
    assert list(reasons.values()) == ["file named in the DICOMDIR is missing"]
    assert Path(next(iter(reasons))).name.upper() == referenced[0].name.upper()


def test_single_archive_and_plain_gzip(tmp_path):
    import gzip

    written = write_corpus(tmp_path / "c", patients=1, series_per_study=1, instances_per_series=2)
    zpath, _ = write_archives(tmp_path / "a", written)
    result = scan_paths([zpath])
    assert sorted(r.member for r in result.instances) == ["IM_0001.dcm", "IM_0002.dcm"]
    single = tmp_path / "one.dcm.gz"
    single.write_bytes(gzip.compress(written[0].path.read_bytes()))
    assert _reasons(scan_paths([single])) == {
        str(single): "not a DICOM file (a compressed file that is not a tar archive)"
    }
