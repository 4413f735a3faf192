"""open_images_downloader.py offline (issue 21, case 17): a host name that cannot be resolved fails at once,
in one line, for the annotation CSVs and for the images; transient errors are still retried."""
from __future__ import annotations

import logging
import socket
import threading
import time
import urllib.error

import pytest
from botocore.exceptions import EndpointConnectionError

from tests.cli.mistakes import file_hashes, temporaries
from vision.cli import open_images_downloader
from vision.datasets import open_images_download_files
from vision.datasets.open_images_download_files import DownloadError, fetch_file
from vision.datasets.open_images_download_images import ImageTask, fetch_image


def _offline(*args, **kwargs):
    raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")


def test_offline_the_downloader_fails_at_once_naming_the_host(tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.setattr(socket, "getaddrinfo", _offline)
    root = tmp_path / "oi"
    root.mkdir()
    (root / "notes.txt").write_text("mine")
    before = file_hashes(root)
    start = time.monotonic()
    with caplog.at_level(logging.INFO):
        code = open_images_downloader.main(["--root", str(root), "--class_names", "Cat",
                                            "--annotations_url", "https://storage.example.com/openimages"])
    seconds = time.monotonic() - start
    out, err = capsys.readouterr()
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert code == 1 and len(errors) == 1 and "Traceback" not in out + err + caplog.text
    assert "cannot resolve the host name storage.example.com" in errors[0] and "offline" in errors[0]
    assert "retrying" not in caplog.text and seconds < 10  # the default --retry 10 would wait about 4 minutes
    assert file_hashes(root) == before and not temporaries(root)


def test_a_transient_error_is_still_retried(tmp_path, monkeypatch):
    calls = []

    def flaky(url, timeout):
        calls.append(url)
        raise urllib.error.URLError(ConnectionResetError("connection reset by peer"))

    monkeypatch.setattr(open_images_download_files.urllib.request, "urlopen", flaky)
    with pytest.raises(DownloadError, match="giving up after 3 attempts"):
        fetch_file("https://storage.example.com/a.csv", tmp_path / "a.csv", attempts=3, backoff_s=0, progress=False)
    assert len(calls) == 3 and not (tmp_path / "a.csv").exists() and not temporaries(tmp_path)


class _OfflineS3:
    def get_object(self, Bucket, Key):
        raise EndpointConnectionError(endpoint_url="https://s3.amazonaws.com",
                                      error=socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"))


def test_offline_an_image_download_stops_at_once(tmp_path):
    start = time.monotonic()
    with pytest.raises(DownloadError, match="cannot resolve the S3 host name"):
        fetch_image(_OfflineS3(), "open-images-dataset", ImageTask("train", "0a1b"), tmp_path, attempts=10,
                    backoff_s=1.0, stop=threading.Event())
    assert time.monotonic() - start < 2 and not temporaries(tmp_path) and not list(tmp_path.rglob("*.jpg"))
