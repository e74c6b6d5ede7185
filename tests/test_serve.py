"""`vemo serve`: the HTTP API answers what it documents, refuses what it must, and cleans up after itself."""

from __future__ import annotations

import io
import re
import stat
import threading
import wave
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="vemo serve needs fastapi (pip install 'vemo[serve]')")
from fastapi.testclient import TestClient  # noqa: E402

from conftest import write_video  # noqa: E402
from test_predict import save_tiny_checkpoint as _tiny  # noqa: E402
from vemo.checkpoint import CheckpointError  # noqa: E402
from vemo.cli import main  # noqa: E402
from vemo.config import Config  # noqa: E402
from vemo.data.synth.render import render_clip  # noqa: E402
from vemo.serve import ServeSettings, create_app  # noqa: E402

LABELS = ["angry", "disgust", "fear", "happy", "neutral", "sad"]


def save_tiny_checkpoint(folder) -> Path:
    """The tiny untrained checkpoint of tests/test_predict.py, as `folder`/model.pt."""
    return _tiny(Path(folder) / "model.pt", LABELS)


def synthetic_face_frames() -> list[np.ndarray]:
    """4 s of a synthetic talking face at 15 fps (two 2-s clips)."""
    cfg = Config().synth
    return [*render_clip(cfg, 1001, "IEO", "HAP", "HI"), *render_clip(cfg, 1001, "IEO", "SAD", "HI")]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="module")
def face_frames():
    return synthetic_face_frames()


@pytest.fixture(scope="module")
def clip(face_frames, tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("clip") / "face.mp4", face_frames, fps=15).read_bytes()


@pytest.fixture(scope="module")
def client(checkpoint):
    with TestClient(create_app(checkpoint, ServeSettings(queue_size=2))) as c:
        yield c


def post(client, data: bytes, name: str = "clip.mp4", url: str = "/api/predict", **kw):
    return client.post(url, files={"file": (name, data, "application/octet-stream")}, **kw)


def png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def test_health_tells_the_model_and_the_limits(client):
    h = client.get("/api/health").json()
    assert h["status"] == "ok" and h["labels"] == LABELS
    assert (h["max_upload_mb"], h["workers"], h["queue_size"], h["busy"]) == (200.0, 1, 2, 0)


def test_face_settings_are_the_models_unless_the_user_sets_them(client, checkpoint, clip, capsys, monkeypatch):
    own = client.get("/api/health").json()["face"]
    chosen = ServeSettings(face_settings={"margin": own["margin"] + 0.3, "detect_frames": 1})
    with TestClient(create_app(checkpoint, chosen)) as c:
        face = c.get("/api/health").json()["face"]
        assert face == {**own, "margin": pytest.approx(own["margin"] + 0.3), "detect_frames": 1}
        wider = post(c, clip).json()["windows"]
    usual = post(client, clip).json()["windows"]
    assert len(wider) == len(usual)  # same windows; the wider crop the model saw changed its probabilities
    pairs = zip(wider, usual, strict=True)
    assert any(a["probabilities"] != pytest.approx(b["probabilities"], abs=1e-6) for a, b in pairs)
    with pytest.raises(ValueError, match="face settings only"):
        create_app(checkpoint, ServeSettings(face_settings={"epochs": 3}))
    monkeypatch.setattr("vemo.serve.serve", lambda *a, **k: pytest.fail("serve started despite a bad --set"))
    assert main(["serve", "--checkpoint", str(checkpoint), "--set", "train.epochs=3"]) == 2
    assert "serve takes face settings only" in capsys.readouterr().err


def test_a_video_gives_windows_with_probabilities_faces_and_downloads(client, clip):
    r = post(client, clip, name="holiday.txt", url="/api/predict?annotate=true")  # the name is not trusted
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["kind"] == "video" and res["label"] in LABELS and res["labels"] == LABELS
    assert len(res["windows"]) >= 4  # 4 s, windows of 2 s every 0.5 s
    for w in res["windows"]:
        assert 0 <= w["start"] < w["end"] <= 4.1 and w["label"] in LABELS
        assert abs(sum(w["probabilities"].values()) - 1) < 1e-3 and w["probabilities"][w["label"]] == w["confidence"]
    assert res["faces"][0]["windows_with_face"] >= 4 and res["counts"][res["label"]] >= 1
    csv = client.get(res["links"]["csv"])
    assert csv.status_code == 200 and csv.text.startswith("source,face,start,end,label,confidence")
    assert len(csv.text.strip().splitlines()) == len(res["windows"]) + 1
    video = client.get(res["links"]["video"])
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(video.content)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 60  # every frame of the upload, annotated


def test_without_annotate_there_is_no_video(client, clip):
    res = post(client, clip).json()
    assert res["links"]["video"] is None
    assert client.get(res["links"]["csv"].replace("windows.csv", "annotated.mp4")).json()["error"] == "no_file"


def test_a_real_crema_d_clip(client, crema_sample):
    data = sorted((crema_sample / "VideoFlash").glob("*.flv"))[0].read_bytes()
    res = post(client, data, name="x").json()
    assert res["kind"] == "video" and res["label"] in LABELS and res["faces"] and res["windows"]


def test_a_still_image_is_one_window(client, face_frames):
    res = post(client, png(face_frames[20]), name="clip.mp4").json()  # an image named like a video
    assert res["kind"] == "image" and len(res["windows"]) == 1 and res["label"] in LABELS
    assert res["links"]["video"] is None


@pytest.mark.parametrize(
    "data",
    [b"just some text, not a video\n" * 50, bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8))],
    ids=["text", "random-bytes"],
)
def test_content_that_is_neither_video_nor_image_is_415(client, data):
    r = post(client, data, name="video.mp4")
    assert r.status_code == 415 and r.json()["error"] == "not_media"


def test_audio_without_a_video_stream_is_415(client):
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes(np.zeros(8000, np.int16).tobytes())
    r = post(client, buf.getvalue(), name="speech.mp4")
    assert r.status_code == 415 and "no video stream" in r.json()["detail"]
    r = post(client, b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 301072\n", name="clip.mp4")
    assert r.status_code == 415 and "Git LFS pointer (run `git lfs pull`)" in r.json()["detail"]


def test_a_broken_image_is_422(client, face_frames):
    r = post(client, png(face_frames[0])[:200], name="face.png")  # the PNG signature, then nothing decodable
    assert r.status_code == 422 and r.json()["error"] == "unreadable"


def test_a_truncated_video_is_422_truncated_and_a_bad_parameter_400(client, face_frames, tmp_path, clip):
    whole = write_video(tmp_path / "w.flv", list(face_frames) * 2, fps=15, codec="flv").read_bytes()
    r = post(client, whole[: len(whole) * 4 // 100], name="cut.flv")  # a partial copy: one frame of 120 decodes
    assert r.status_code == 422 and r.json()["error"] == "truncated" and "1 of the 120 frames" in r.json()["detail"]
    r = post(client, clip, url="/api/predict?annotate=maybe")
    assert r.status_code == 400 and r.json()["error"] == "bad_request" and "annotate" in r.json()["detail"]


def test_no_face_is_422_in_plain_words(client, tmp_path):
    wall = write_video(tmp_path / "wall.mp4", [np.full((120, 160), 90, np.uint8)] * 40, fps=15).read_bytes()
    r = post(client, wall)
    assert r.status_code == 422 and r.json()["error"] == "no_face" and "no face was found" in r.json()["detail"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"content": b'{"file": "x"}', "headers": {"content-type": "application/json"}},
        {"files": {"other": ("a.mp4", b"123")}},
        {"files": {"file": ("a.mp4", b"")}},
    ],
    ids=["not-multipart", "no-file-field", "empty-file"],
)
def test_malformed_requests_are_400(client, kwargs):
    r = client.post("/api/predict", **kwargs)
    assert r.status_code == 400 and r.json()["error"] == "bad_request"


def test_too_large_is_413_with_or_without_content_length(checkpoint, clip):
    with TestClient(create_app(checkpoint, ServeSettings(max_upload_mb=0.01))) as c:
        r = post(c, clip)  # 10 kB limit; the clip is larger; Content-Length says so up front
        assert r.status_code == 413 and r.json()["error"] == "too_large" and "0.01 MB" in r.json()["detail"]
        boundary = "vemo-test-boundary"
        body = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'.encode()
        body += clip + f"\r\n--{boundary}--\r\n".encode()
        chunks = (body[i : i + 4096] for i in range(0, len(body), 4096))  # chunked: no Content-Length
        r = c.post(
            "/api/predict", content=chunks, headers={"content-type": f"multipart/form-data; boundary={boundary}"}
        )
        assert r.status_code == 413 and r.json()["error"] == "too_large"
        assert not list(c.app.state.server.root.rglob("upload"))  # the partial upload is gone


def test_too_long_video_is_422(checkpoint, clip):
    with TestClient(create_app(checkpoint, ServeSettings(max_seconds=1.0))) as c:
        r = post(c, clip)
    assert r.status_code == 422 and r.json()["error"] == "too_long" and "4 s long" in r.json()["detail"]


def test_past_the_time_limit_is_504(checkpoint, clip):
    with TestClient(create_app(checkpoint, ServeSettings(time_limit_s=1e-9))) as c:
        r = post(c, clip)
        assert r.status_code == 504 and r.json()["error"] == "timeout"
        assert not list(c.app.state.server.root.rglob("*.*"))  # neither upload nor partial outputs remain


def test_a_full_queue_is_503_with_retry_after_and_recovers(checkpoint, clip):
    with TestClient(create_app(checkpoint, ServeSettings(workers=1, queue_size=1))) as c:
        queue, release = c.app.state.server.queue, threading.Event()
        blockers = [queue.submit(queue.reserve(), release.wait) for _ in range(2)]  # one running, one waiting
        try:
            r = post(c, clip)
            assert r.status_code == 503 and r.json()["error"] == "busy"
            assert int(r.headers["Retry-After"]) >= 1
            assert c.get("/api/health").json()["busy"] == 2  # the server still answers while full
        finally:
            release.set()  # a failed assertion must not leave threads blocked forever
        for b in blockers:
            b.result(timeout=10)
        assert post(c, clip).status_code == 200


def test_jobs_report_progress_and_refuse_downloads_until_done(checkpoint, clip):
    with TestClient(create_app(checkpoint, ServeSettings(workers=1, queue_size=2))) as c:
        queue, release = c.app.state.server.queue, threading.Event()
        blocker = queue.submit(queue.reserve(), release.wait)
        try:
            r = post(c, clip, url="/api/jobs")
            assert r.status_code == 202 and r.json()["state"] == "queued"
            job = r.json()["id"]
            assert c.get(f"/api/jobs/{job}/windows.csv").status_code == 409
        finally:
            release.set()
        blocker.result(timeout=10)
        c.app.state.server.jobs.get(job).future.result(timeout=60)
        status = c.get(f"/api/jobs/{job}").json()
        assert status["state"] == "done" and status["progress"] == 1.0 and status["result"]["links"]["video"]
        assert c.get(status["result"]["links"]["video"]).status_code == 200


def test_a_failed_job_carries_its_error_and_status(client):
    r = post(client, b"\x00" * 3000, url="/api/jobs")  # refused while uploading: answered at once
    assert r.status_code == 415
    wall = np.full((120, 160), 90, np.uint8)
    r = post(client, png(wall), url="/api/jobs")
    job = client.app.state.server.jobs.get(r.json()["id"])
    job.future.result(timeout=60)
    status = client.get(f"/api/jobs/{job.id}").json()
    assert status["state"] == "failed" and status["error"]["status"] == 422 and status["error"]["error"] == "no_face"


def test_uploads_are_deleted_and_the_folder_is_private_and_removed(checkpoint, clip):
    c = TestClient(create_app(checkpoint, ServeSettings(keep_jobs=2)))
    with c:
        root = c.app.state.server.root
        assert stat.S_IMODE(root.stat().st_mode) == 0o700
        for _ in range(4):
            assert post(c, clip, url="/api/predict?annotate=true").status_code == 200
        assert post(c, b"not a video" * 100).status_code == 415
        assert not list(root.rglob("upload"))  # every upload deleted after use
        assert len(list((root / "jobs").iterdir())) == 2  # only the newest keep_jobs results are kept
    assert not root.exists()  # shutting down removes everything


def test_no_request_parameter_can_name_a_server_path(client, clip):
    spec = client.get("/openapi.json").json()
    params = {
        (p["name"], p["in"]) for op in spec["paths"].values() for m in op.values() for p in m.get("parameters", [])
    }
    assert params == {("annotate", "query"), ("job_id", "path")}
    job_param = spec["paths"]["/api/jobs/{job_id}"]["get"]["parameters"][0]
    assert job_param["schema"]["pattern"] == "^[0-9a-f]{32}$"
    for bad in ["..%2F..%2Fetc%2Fpasswd", "../../etc/passwd", "%2Fetc%2Fpasswd", "0" * 31 + "g", "0" * 32]:
        r = client.get(f"/api/jobs/{bad}/windows.csv")
        assert r.status_code in (400, 404) and "root:" not in r.text
    assert client.get("/static/../app.py").status_code == 404
    r = post(client, clip, name="../../escaped.mp4")
    root = client.app.state.server.root
    assert r.status_code == 200 and not list(root.parent.rglob("escaped*"))


def test_the_page_and_docs_need_no_network(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="chart"' in page.text
    for text in [page.text, client.get("/static/app.js").text, client.get("/static/app.css").text]:
        assert not re.search(r"https?://", text)
    docs = client.get("/docs")
    assert docs.status_code == 200 and "cdn" not in docs.text.lower()
    assets = re.findall(r"""(?:src|href)=['"]([^'"]+\.(?:js|css))""", docs.text)
    assert assets and all(client.get(a).status_code == 200 for a in assets)
    body = client.get("/openapi.json").json()["paths"]["/api/predict"]["post"]
    assert "multipart/form-data" in body["requestBody"]["content"]
    assert {"413", "415", "422", "503"} <= set(body["responses"])


def test_a_bad_checkpoint_fails_at_start_and_leaves_nothing(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(CheckpointError):
        create_app(tmp_path / "missing.pt")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "bad, says",
    [
        ({"max_upload_mb": 0}, "--max-upload-mb must be a positive number"),
        ({"workers": 0}, "need --workers >= 1"),
        ({"hop_s": float("nan")}, "--hop must be a positive number"),
    ],
)
def test_settings_are_checked(bad, says):
    with pytest.raises(ValueError, match=says):
        ServeSettings(**bad)


def test_cli_serve_passes_its_options_on(monkeypatch, checkpoint, capsys):
    import vemo.serve
    from vemo.cli import main

    calls = []
    monkeypatch.setattr(vemo.serve, "serve", lambda *a, **kw: calls.append((a, kw)))
    assert (
        main(["serve", "--checkpoint", str(checkpoint), "--port", "8123", "--max-upload-mb", "5", "--queue", "1"]) == 0
    )
    (checkpoint_arg, host, port, settings), _ = calls[0]
    assert (checkpoint_arg, host, port) == (str(checkpoint), "127.0.0.1", 8123)
    assert settings.max_upload_mb == 5 and settings.queue_size == 1
    monkeypatch.undo()
    assert main(["serve", "--checkpoint", "/nonexistent/model.pt"]) == 2
    assert "vemo serve: error:" in capsys.readouterr().err
