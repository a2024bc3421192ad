"""Video files: faces found, tracked with stable IDs, smoothed and summarised; bad files get one line.

The clip is made from a real face photo that ships with scikit-image (demo.face_clip): the astronaut
crossing the frame while growing and tilting, a second (mirrored, smaller) face in the middle third, no
face in the last third; 60 frames of 256 x 192 at 10 frames/s.
"""

import io
import json

import numpy as np
import pytest

av = pytest.importorskip("av", reason="video needs PyAV: pip install -e '.[video]'")
pytest.importorskip("skimage", reason="the test clip is made from scikit-image's astronaut photo")

from happysad import cli, demo, video  # noqa: E402
from happysad.predict import Predictor  # noqa: E402

RATE = 10  # the clip's frames per second
FACE_MODEL = "fer-happy-sad"


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """(path of the MP4, per-frame truth: (first face shown, second face shown))."""
    frames, truth = demo.face_clip((256, 192), 60)
    path = video.write_video(frames, tmp_path_factory.mktemp("video") / "clip.mp4", RATE)
    return path, truth


@pytest.fixture(scope="module")
def face_predictor():
    return Predictor(FACE_MODEL)


def seen(truth, k):
    """(first, last) frame index where face k is shown."""
    idx = [i for i, t in enumerate(truth) if t[k]]
    return idx[0], idx[-1]


def by_kind(results):
    out = {"frame": [], "track": [], "clip": []}
    for r in results:
        out[r["kind"]].append(r)
    return out


def test_every_frame_two_people_with_stable_ids(clip, face_predictor):
    path, truth = clip
    res = by_kind(face_predictor.predict_video(path, fps=0))
    frames = res["frame"]
    assert [f["frame"] for f in frames] == list(range(len(truth)))
    assert [f["time"] for f in frames] == pytest.approx([i / RATE for i in range(len(truth))])
    # Each frame shows exactly the faces the clip has, and each person keeps one ID throughout:
    # the astronaut (the larger face, listed first) is #1, the face that enters later is #2.
    for f, (a, b) in zip(frames, truth):
        assert [x["track"] for x in f["faces"]] == [1] * a + [2] * b, f
        for x in f["faces"]:
            assert sum(x["probabilities"].values()) == pytest.approx(1, abs=1e-4)
            assert x["label"] == max(x["probabilities"], key=x["probabilities"].get)
    # The summaries' times are right to one sampled frame.
    tracks = {t["track"]: t for t in res["track"]}
    assert sorted(tracks) == [1, 2]
    for k, tid in ((0, 1), (1, 2)):
        first, last = seen(truth, k)
        t = tracks[tid]
        assert t["first_seen"] == pytest.approx(first / RATE, abs=1 / RATE)
        assert t["last_seen"] == pytest.approx(last / RATE, abs=1 / RATE)
        assert t["seconds"] == pytest.approx((last - first + 1) / RATE, abs=1 / RATE)
        assert sum(t["share"].values()) == pytest.approx(1, abs=1e-3)
        assert t["label"] == "happy"  # the astronaut smiles
    [c] = res["clip"]
    assert c["tracks"] == 2 and c["frames_sampled"] == len(truth) == c["frames_decoded"]
    assert c["duration"] == pytest.approx(len(truth) / RATE)
    assert c["seconds_with_faces"] == pytest.approx(sum(a or b for a, b in truth) / RATE, abs=1 / RATE)
    # face time: both people together
    assert sum(c["face_seconds"].values()) == pytest.approx(tracks[1]["seconds"] + tracks[2]["seconds"])
    assert c["label"] == "happy" and "warning" not in c


def test_sampling_rate_and_the_photo_model(clip):
    """--fps 2.5 keeps every 4th frame; the default photo model judges faces with its face member."""
    path, truth = clip
    res = by_kind(Predictor("happy-sad").predict_video(path, fps=2.5))
    assert [f["frame"] for f in res["frame"]] == list(range(0, len(truth), 4))
    step = 4 / RATE
    tracks = {t["track"]: t for t in res["track"]}
    assert sorted(tracks) == [1, 2]
    first, last = seen(truth, 1)
    assert tracks[2]["first_seen"] == pytest.approx(first / RATE, abs=step)
    assert tracks[2]["seconds"] == pytest.approx((last - first + 1) / RATE, abs=step)
    assert res["clip"][0]["sample_rate"] == 2.5


def test_smoothing_follows_a_change_with_a_half_life():
    """The EMA weighs the past by seconds, not by samples: after one half-life, half way."""
    t = video.Tracker(["happy", "sad"], dt=0.1, half_life=0.5)
    box = [10, 10, 40, 40]
    [tr] = t.update(0.0, [box], np.array([[1.0, 0.0]]))
    t.update(0.5, [box], np.array([[0.0, 1.0]]))
    assert tr.probs == pytest.approx([0.5, 0.5])
    # the same change sampled ten times as often ends at the same place
    t2 = video.Tracker(["happy", "sad"], dt=0.01, half_life=0.5)
    [tr2] = t2.update(0.0, [box], np.array([[1.0, 0.0]]))
    for i in range(1, 51):
        t2.update(i * 0.01, [box], np.array([[0.0, 1.0]]))
    assert tr2.probs == pytest.approx([0.5, 0.5], abs=1e-6)


def test_tracks_end_after_max_age_and_far_faces_are_new():
    t = video.Tracker(["a", "b"], dt=0.2, max_age=1.0)
    p = np.array([[0.5, 0.5]])
    [a] = t.update(0.0, [[0, 0, 40, 40]], p)
    [b] = t.update(0.2, [[200, 0, 40, 40]], p)  # five face sizes away: another person
    assert b.id != a.id
    [c] = t.update(2.0, [[200, 0, 40, 40]], p)  # unseen for 1.8 s: the old track has ended
    assert c.id not in (a.id, b.id)
    assert [x.id for x in t.tracks()] == [1, 2, 3]


def test_cli_json_csv_and_annotated_video(clip, tmp_path, capsys):
    path, truth = clip
    out, table = tmp_path / "out", tmp_path / "clip.csv"
    code = cli.main(["predict", str(path), "--model", FACE_MODEL, "--json", "--fps", "5", "--csv", str(table),
                     "--save-annotated", str(out)])
    assert code == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    kinds = [r["kind"] for r in lines]
    n = len(truth) // 2
    assert kinds == ["frame"] * n + ["track", "track", "clip"]
    assert {"time", "frame", "faces"} <= set(lines[0]) and {"track", "box", "label", "probabilities"} <= set(lines[0]["faces"][0])
    clip_line = lines[-1]
    # the annotated video has one frame per sampled frame, at the sampling rate; a timeline per person
    with av.open(clip_line["annotated"]) as c:
        assert sum(1 for _ in c.decode(video=0)) == n
        assert float(c.streams.video[0].average_rate) == pytest.approx(5)
    assert [p.rsplit("/", 1)[-1] for p in clip_line["timelines"]] == ["clip.track1.png", "clip.track2.png"]
    assert all((out / f"clip.track{i}.png").stat().st_size > 2000 for i in (1, 2))
    # the CSV: a row per face per sampled frame (a frame without a face still gets one), per track, per clip
    import csv

    rows = list(csv.DictReader(open(table)))
    faces = sum(max(len(r["faces"]), 1) for r in lines if r["kind"] == "frame")
    assert [r["kind"] for r in rows] == ["frame"] * faces + ["track", "track", "clip"]
    assert rows[-2]["first_seen"] == str(lines[-2]["first_seen"]) and rows[0]["p_happy"]


def test_cli_text_summary(clip, tmp_path, capsys):
    path, _ = clip
    for _ in range(2):  # the second run into the same folder does not overwrite the first
        assert cli.main(["predict", str(path), "--model", FACE_MODEL, "--fps", "2", "--save-annotated", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{path}: happy") and "2 people" in out[0]
    assert out[1].startswith("  #1  seen 0.0-") and out[2].startswith("  #2  seen 2.0-")
    assert out[3] == f"  annotated: {tmp_path / 'clip.annotated.mp4'}"
    assert f"  annotated: {tmp_path / 'clip-2.annotated.mp4'}" in out and (tmp_path / "clip-2.track2.png").exists()


def test_videos_are_recognised_by_content(clip, tmp_path):
    path, _ = clip
    from PIL import Image

    renamed = tmp_path / "holiday.jpg"  # an MP4 with a photo's name is still a video
    renamed.write_bytes(path.read_bytes())
    still = tmp_path / "still.mp4"  # a PNG named like a video is a photo
    Image.new("RGB", (32, 32)).save(still, "PNG")
    gif = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (32, 32), (i * 40, 0, 0)) for i in range(3)]
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    single = tmp_path / "one.gif"
    frames[0].save(single)
    assert video.is_video(path) and video.is_video(renamed) and video.is_video(gif)
    assert not video.is_video(still) and not video.is_video(single)


def test_bad_and_truncated_files(clip, tmp_path, capsys):
    path, truth = clip
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video at all")
    header_only = tmp_path / "header.mp4"
    header_only.write_bytes(path.read_bytes()[:600])
    # a Matroska copy cut in the middle: the frames before the cut still come out, with a warning
    mkv = tmp_path / "clip.mkv"
    with av.open(str(path)) as src:
        video.write_video([f.to_image() for f in src.decode(video=0)], mkv, RATE)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(mkv.read_bytes()[: mkv.stat().st_size // 2])

    code = cli.main(["predict", str(notes), str(header_only), str(cut), "--model", FACE_MODEL, "--fps", "0", "--json"])
    assert code == 1
    out = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    errors = [r for r in out if "error" in r]
    assert [e["path"] for e in errors] == [str(notes), str(header_only)]
    assert "not a video" in errors[0]["error"]
    frames = [r for r in out if r.get("kind") == "frame"]
    assert 5 < len(frames) < len(truth)  # what the cut file still has
    [c] = [r for r in out if r.get("kind") == "clip"]
    assert "truncated" in c["warning"] or "damaged" in c["warning"]
    with pytest.raises(video.VideoError, match="not a video"):
        next(Predictor(FACE_MODEL).predict_video(io.BytesIO(b"\0" * 100).getvalue()))


def test_whole_image_model_is_refused_for_video(clip, trained_run):
    _, res = trained_run
    with pytest.raises(Exception, match="face or photo model"):
        next(Predictor(res.run_dir).predict_video(clip[0]))


# ---- the server: POST /api/predict-video and the live camera's WebSocket

@pytest.fixture(scope="module")
def client(face_predictor):
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from happysad import serve

    with TestClient(serve.create_app(face_predictor, warm_up=False)) as c:
        yield c


def test_api_predict_video(client, clip):
    path, truth = clip
    r = client.post("/api/predict-video?fps=5", files={"file": ("clip.mp4", path.read_bytes(), "video/mp4")})
    assert r.status_code == 200
    body = r.json()
    # the same lines as `happysad predict clip.mp4 --json --fps 5`, grouped
    assert len(body["frames"]) == len(truth) // 2 and [t["track"] for t in body["tracks"]] == [1, 2]
    assert body["clip"]["tracks"] == 2 and body["clip"]["path"] == "clip.mp4"
    assert body["tracks"][1]["first_seen"] == pytest.approx(seen(truth, 1)[0] / RATE, abs=0.2)

    r = client.post("/api/predict-video", files={"file": ("notes.mp4", b"not a video", "video/mp4")})
    assert r.status_code == 415 and r.json()["error"]["code"] == "not_video"
    assert r.json()["error"]["file"] == "notes.mp4"
    r = client.post("/api/predict-video?fps=50", files={"file": ("clip.mp4", path.read_bytes(), "video/mp4")})
    assert r.status_code == 422 and "fps" in r.json()["error"]["message"]
    r = client.post("/api/predict-video")
    assert r.status_code == 422 and "field 'file'" in r.json()["error"]["message"]
    assert client.get("/api/model").json()["video"]["max_video_seconds"] > 0


def test_length_limit(face_predictor, clip):
    """A server refuses videos over its length limit (413 too_long) before decoding them."""
    with pytest.raises(video.VideoError, match="limit is 2 s") as e:
        next(face_predictor.predict_video(clip[0].read_bytes(), max_seconds=2))
    from happysad.serve_video import VIDEO_STATUS

    assert VIDEO_STATUS[e.value.reason] == 413


def test_live_websocket_tracks_across_frames(client):
    from PIL import Image

    frames, truth = demo.face_clip((256, 192), 60)
    with client.websocket_connect("/api/live") as ws:
        answers = []
        for i in (16, 18, 20, 22, 24):  # the second face enters at frame 20
            buf = io.BytesIO()
            frames[i].save(buf, "JPEG", quality=85)
            ws.send_bytes(buf.getvalue())
            answers.append(ws.receive_json())
        assert [[f["track"] for f in a["faces"]] for a in answers] == [[1], [1], [1, 2], [1, 2], [1, 2]]
        assert answers[-1]["width"] == 256 and answers[-1]["server_ms"] > 0
        ws.send_text("hello")
        assert ws.receive_json()["error"]["code"] == "bad_request"
        ws.send_bytes(b"GIF89a broken")
        assert ws.receive_json()["error"]["status"] == 400
        # the connection still works after a bad frame
        buf = io.BytesIO()
        Image.new("RGB", (64, 48)).save(buf, "JPEG")
        ws.send_bytes(buf.getvalue())
        assert ws.receive_json()["faces"] == []


def test_a_held_frame_counts_for_the_time_it_is_shown(face_predictor, tmp_path):
    """An animated GIF whose last frame is held for a second (Pillow merges the identical no-face frames):
    the summaries count time on screen, not frames."""
    frames, truth = demo.face_clip((160, 120), 30)
    gif = tmp_path / "held.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100, loop=0)
    for fps in (0, 5):
        res = by_kind(face_predictor.predict_video(gif, fps=fps))
        [c] = res["clip"]
        assert c["duration"] == pytest.approx(len(truth) * 0.1), fps
        assert c["seconds_with_faces"] == pytest.approx(sum(a or b for a, b in truth) * 0.1), fps
        assert [t["seconds"] for t in res["track"]] == pytest.approx([2.0, 1.0]), fps
    assert len(res["frame"]) < len(truth) // 2  # the held frame was analysed once
