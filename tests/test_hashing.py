import hashlib
import os

from pipeline.data.hashing import FileStamp, hash_files, sha256_file


def _stamp(path) -> FileStamp:
    info = os.stat(path)
    return FileStamp(size=info.st_size, mtime_ns=info.st_mtime_ns)


def test_sha256_matches_hashlib(tmp_path):
    path = tmp_path / "a.bin"
    payload = os.urandom(3 * 1024 * 1024 + 7)  # spans several read chunks
    path.write_bytes(payload)
    assert sha256_file(path) == hashlib.sha256(payload).hexdigest()


def test_unchanged_stamp_reuses_the_known_hash(tmp_path):
    path = tmp_path / "a.jpg"
    path.write_bytes(b"one")
    stamp = _stamp(path)
    [result] = hash_files([path], known={str(path): (stamp, "remembered")})
    assert result.reused and result.sha256 == "remembered"


def test_changed_file_is_hashed_again(tmp_path):
    path = tmp_path / "a.jpg"
    path.write_bytes(b"one")
    stale = FileStamp(size=3, mtime_ns=_stamp(path).mtime_ns - 1)
    [result] = hash_files([path], known={str(path): (stale, "remembered")})
    assert not result.reused and result.sha256 == hashlib.sha256(b"one").hexdigest()


def test_missing_and_dangling_files_get_reasons_not_exceptions(tmp_path):
    link = tmp_path / "link.jpg"
    link.symlink_to(tmp_path / "nowhere.jpg")
    missing, dangling = hash_files([tmp_path / "gone.jpg", link])
    assert missing.sha256 is None and missing.error == "file not found"
    assert dangling.sha256 is None and "broken symbolic link" in dangling.error


def test_results_keep_input_order(tmp_path):
    paths = []
    for index in range(20):
        path = tmp_path / f"{index}.jpg"
        path.write_bytes(str(index).encode())
        paths.append(path)
    results = hash_files(paths)
    assert [r.path for r in results] == paths
    assert [r.sha256 for r in results] == [hashlib.sha256(str(i).encode()).hexdigest() for i in range(20)]
