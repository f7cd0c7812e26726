"""Files written whole or not at all (psicogest/files.py)."""

from __future__ import annotations

import errno

import pytest

from psicogest.files import is_disk_error, write_atomically


def test_replace_writes_the_new_content_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "a.eml"
    target.write_bytes(b"old")
    assert write_atomically(target, b"new") is True
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["a.eml"]


def test_the_first_writer_of_a_secret_wins(tmp_path):
    target = tmp_path / "secret_key"
    assert write_atomically(target, b"first", mode=0o600, replace=False, durable=True) is True
    assert write_atomically(target, b"second", mode=0o600, replace=False) is False
    assert target.read_bytes() == b"first"
    assert target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret_key"]


def test_a_failed_write_leaves_neither_target_nor_temporary_file(tmp_path):
    missing = tmp_path / "gone" / "a.eml"
    with pytest.raises(FileNotFoundError):
        write_atomically(missing, b"x")
    assert list(tmp_path.iterdir()) == []


def test_disk_errors_are_told_apart_from_network_errors():
    assert is_disk_error(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_error(OSError(errno.EROFS, "Read-only file system"))
    assert not is_disk_error(ConnectionRefusedError(errno.ECONNREFUSED, "refused"))
    assert not is_disk_error(OSError("no errno"))
