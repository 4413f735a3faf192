"""vision.zoo and vision.ssd.weights against a local HTTP server on 127.0.0.1: download, cache hit with the
server stopped, hash mismatch, an interrupted download leaving no file, HTTP errors, strict checks of the
original's files, and zoo names accepted by the weight loaders and the labels argument."""
from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import os
import stat
import threading
from pathlib import Path

import pytest
import torch

from vision import zoo
from vision.cli import zoo as zoo_command
from vision.ssd import weights
from vision.ssd.registry import create_net
from vision.utils.labels import read_label_file

torch.set_num_threads(1)


class _Server:
    """Serves ``files`` (URL path -> bytes) on 127.0.0.1; ``cut_after`` bytes of a file then drops the
    connection (an interrupted download)."""

    def __init__(self):
        self.files = {}
        self.cut_after = None
        self.requests = 0
        self.stopped = False
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                server.requests += 1
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_after is not None:
                    self.wfile.write(body[:server.cut_after])
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def stop(self):
        if self.stopped:
            return
        self.stopped = True
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    running = _Server()
    yield running
    running.stop()


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty hub cache: ``$TORCH_HOME`` in the test's folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    return Path(tmp_path / "torch" / "hub" / "checkpoints")


def _bytes(obj) -> bytes:
    stream = io.BytesIO()
    torch.save(obj, stream)
    return stream.getvalue()


def _entry_served(server, monkeypatch, name: str, body: bytes, **changes) -> zoo.ZooEntry:
    """Point zoo entry ``name`` at the local server, serving ``body``."""
    path = "/" + zoo.ZOO[name].file_name
    server.files[path] = body
    entry = dataclasses.replace(zoo.ZOO[name], url=server.url(path), **changes)
    monkeypatch.setitem(zoo.ZOO, name, entry)
    monkeypatch.setattr(zoo, "ENTRIES", tuple(entry if e.name == name else e for e in zoo.ENTRIES))
    return entry


def test_download_checks_the_file_strictly_and_caches_it_with_umask_permissions(server, hub, monkeypatch):
    state_dict = create_net("mb1-ssd", 21).state_dict()
    _entry_served(server, monkeypatch, "mb1-ssd-voc", _bytes(state_dict))
    old_mask = os.umask(0o027)
    try:
        path = weights.resolve("mb1-ssd-voc", progress=False)
    finally:
        os.umask(old_mask)
    assert Path(path) == hub / "mobilenet-v1-ssd-mp-0_675.pth"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    loaded = torch.load(path, weights_only=True)
    assert all(torch.equal(loaded[k], state_dict[k]) for k in state_dict)
    assert sorted(os.listdir(hub)) == ["mobilenet-v1-ssd-mp-0_675.pth"]  # no temporary left


def test_cache_hit_needs_no_server(server, hub, monkeypatch):
    _entry_served(server, monkeypatch, "mb2-imagenet", _bytes(create_net("mb2-ssd-lite", 2).base_net.state_dict()))
    first = weights.resolve("mb2-imagenet", progress=False)
    server.stop()
    requests = server.requests
    assert weights.resolve("mb2-imagenet", progress=False) == first
    assert server.requests == requests
    net = create_net("mb2-ssd-lite", 3)
    weights.init_from_base_net(net, "mb2-imagenet")  # the name works wherever a file does


def test_hash_mismatch_saves_nothing(server, hub, monkeypatch):
    body = _bytes({"w": torch.zeros(3)})
    _entry_served(server, monkeypatch, "mb1-imagenet", body, sha256="0" * 64)
    with pytest.raises(zoo.ZooError, match="does not match its SHA-256"):
        weights.resolve("mb1-imagenet", progress=False)
    assert not hub.exists() or os.listdir(hub) == []


def test_right_hash_passes(server, hub, monkeypatch):
    body = _bytes(create_net("vgg16-ssd", 2).base_net.state_dict())
    _entry_served(server, monkeypatch, "vgg16-reducedfc", body, sha256=hashlib.sha256(body).hexdigest())
    assert os.path.getsize(weights.resolve("vgg16-reducedfc", progress=False)) == len(body)


def test_a_file_that_does_not_load_strictly_is_refused(server, hub, monkeypatch):
    _entry_served(server, monkeypatch, "mb2-ssd-lite-voc", _bytes(create_net("mb1-ssd", 21).state_dict()))
    with pytest.raises(zoo.ZooError, match="not a mb2-ssd-lite ssd"):
        weights.resolve("mb2-ssd-lite-voc", progress=False)
    assert os.listdir(hub) == []


def test_interrupted_download_leaves_no_file(server, hub, monkeypatch):
    _entry_served(server, monkeypatch, "mb1-ssd-voc", _bytes(create_net("mb1-ssd", 21).state_dict()))
    server.cut_after = 1000
    with pytest.raises(zoo.ZooError):
        weights.resolve("mb1-ssd-voc", progress=False)
    assert os.listdir(hub) == []


def test_ctrl_c_during_download_leaves_no_file(server, hub, monkeypatch):
    _entry_served(server, monkeypatch, "mb1-ssd-voc", _bytes(create_net("mb1-ssd", 21).state_dict()))

    def interrupted(url, dst, hash_prefix=None, progress=True):
        with open(dst, "wb") as stream:
            stream.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch.hub, "download_url_to_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        weights.resolve("mb1-ssd-voc", progress=False)
    assert os.listdir(hub) == []


def test_stale_temporaries_of_a_killed_run_are_removed(server, hub, monkeypatch):
    _entry_served(server, monkeypatch, "mb1-imagenet", _bytes(create_net("mb1-ssd", 2).base_net.state_dict()))
    hub.mkdir(parents=True)
    stale = hub / ".mobilenet_v1_with_relu_69_5.pth.tmp-abc0123"
    stale.write_bytes(b"x")
    other = hub / "someone-elses.partial"
    other.write_bytes(b"y")
    weights.resolve("mb1-imagenet", progress=False)
    assert not stale.exists() and other.exists()


def test_404_names_the_url_and_the_cache_path(server, hub, monkeypatch):
    entry = _entry_served(server, monkeypatch, "mb1-ssd-voc", b"")
    del server.files["/" + entry.file_name]
    with pytest.raises(zoo.ZooError) as raised:
        weights.resolve("mb1-ssd-voc", progress=False)
    message = str(raised.value)
    assert "\n" not in message and "HTTP 404" in message
    assert entry.url in message and str(hub / entry.file_name) in message


def test_offline_names_the_url_and_the_cache_path(hub, monkeypatch):
    entry = dataclasses.replace(zoo.ZOO["mb1-ssd-voc"], url="http://127.0.0.1:9/mobilenet-v1-ssd-mp-0_675.pth")
    monkeypatch.setitem(zoo.ZOO, "mb1-ssd-voc", entry)
    with pytest.raises(zoo.ZooError, match=r"cannot download http://127\.0\.0\.1:9/.*put the file by hand at .*"
                                           r"mobilenet-v1-ssd-mp-0_675\.pth"):
        weights.resolve("mb1-ssd-voc", progress=False)


def test_a_plain_url_is_downloaded_and_loads(server, hub):
    state_dict = create_net("sq-ssd-lite", 4).state_dict()
    server.files["/mine.pth"] = _bytes(state_dict)
    net = create_net("sq-ssd-lite", 4)
    weights.load_weights(net, server.url("/mine.pth"))
    assert torch.equal(net.state_dict()["extras.0.0.weight"], state_dict["extras.0.0.weight"])
    assert (hub / "mine.pth").exists()


def test_torchvision_entries_read_url_and_hash_from_torchvision():
    from torchvision.models import get_weight

    entry = zoo.ZOO["mobilenet_v2-imagenet-v2"]
    assert entry.download_url() == get_weight("MobileNet_V2_Weights.IMAGENET1K_V2").url
    assert entry.hash_prefix() == "7ebf99e0" and entry.cache_file_name() == "mobilenet_v2-7ebf99e0.pth"
    assert zoo.find_entry("SSD300_VGG16_Weights.COCO_V1").name == "ssd300-vgg16-coco"


def test_torchvision_weights_land_where_torchvision_looks(server, hub, monkeypatch):
    """A torchvision entry goes to the same cache file as torchvision's own download, hash-checked."""
    body = _bytes({"w": torch.ones(2)})
    digest = hashlib.sha256(body).hexdigest()
    name = f"thing-{digest[:8]}.pth"
    server.files["/" + name] = body
    entry = zoo.ZooEntry("thing", zoo.TORCHVISION_BACKBONE, "-", torchvision_weights="X_Weights.V1")
    monkeypatch.setattr(zoo.ZooEntry, "download_url", lambda self: server.url("/" + name))
    assert entry.hash_prefix() == digest[:8]
    assert zoo.download(entry, progress=False) == str(hub / name)
    server.files["/" + name] = body + b"tampered"
    (hub / name).unlink()
    with pytest.raises(zoo.ZooError, match="SHA-256"):
        zoo.download(entry, progress=False)


def test_vgg16_classification_weights_are_refused_by_name():
    with pytest.raises(zoo.ZooError, match="IMAGENET1K_FEATURES"):
        weights.resolve("VGG16_Weights.IMAGENET1K_V1")


def test_dash_labels_are_the_entry_labels(hub):
    voc = read_label_file(zoo.resolve_labels("-", "mb2-ssd-lite-voc"))
    assert voc == read_label_file(Path(__file__).parents[1] / "models" / "voc-model-labels.txt")
    coco = read_label_file(zoo.resolve_labels("-", "ssdlite320-mb3-large-coco"))
    assert len(coco) == 91 and coco[0] == "BACKGROUND" and coco[1] == "person"
    assert coco[12] == "N/A-12" and len(set(coco)) == 91
    assert zoo.resolve_labels("my-labels.txt", "mb1-ssd-voc") == "my-labels.txt"
    with pytest.raises(zoo.ZooError, match="has no class names"):
        zoo.resolve_labels("-", "mb1-imagenet")


def test_list_prints_every_entry_and_whether_it_is_cached(hub, capsys):
    assert zoo_command.main(["list"]) == 0
    out = capsys.readouterr().out
    for entry in zoo.ENTRIES:
        assert entry.name in out
    assert "ssd300-vgg16-coco" in out and "COCO-val2017 box_map 25.1" in out


def test_get_unknown_name_is_a_one_line_error(hub, capsys):
    assert zoo_command.main(["get", "no-such-model"]) == 2
    assert "not a zoo name" in capsys.readouterr().err
