"""CREMA-D specifics: the crowd's FaceVote target, actor demographics, previews of the real clips."""

import shutil

from vemo.config import PrepareConfig
from vemo.data.loading.prepare import prepare
from vemo.data.loading.previews import save_previews
from vemo.data.sources.crema_d import read_crema_d


def _copy_layout(src, dst, votes: dict[str, str]):
    shutil.copytree(src / "VideoFlash", dst / "VideoFlash")
    (dst / "processedResults").mkdir()
    rows = ['"","FileName","VoiceVote","VoiceLevel","FaceVote","FaceLevel","MultiModalVote","MultiModalLevel"']
    rows += [f'"{i}","{name}","N","50","{vote}","60","N","50"' for i, (name, vote) in enumerate(votes.items(), 1)]
    (dst / "processedResults" / "summaryTable.csv").write_text("\n".join(rows) + "\n")
    (dst / "VideoDemographics.csv").write_text(
        '"ActorID","Age","Sex","Race","Ethnicity"\n1001,51,"Male","Caucasian","Not Hispanic"\n'
    )


def test_face_vote_target_and_demographics(tiny_synth, tmp_path):
    names = sorted(p.stem for p in (tiny_synth / "VideoFlash").iterdir())
    votes = {n: "H" for n in names[:10]}
    votes[names[10]] = "A:D"  # a tie has no single perceived label
    votes[names[11]] = "X"
    _copy_layout(tiny_synth, tmp_path, votes)
    acted, skipped, _ = read_crema_d(tmp_path)
    assert len(acted) == len(names) and not skipped
    assert acted[0].meta["sex"] == "Male" and acted[0].meta["age"] == "51"
    records, skipped, _ = read_crema_d(tmp_path, target="face-vote")
    assert [r.label for r in records] == ["happy"] * 10
    assert all(r.meta["acted"] in ("angry", "disgust", "fear", "happy", "neutral", "sad") for r in records)
    reasons = sorted(s.reason for s in skipped)
    assert len(skipped) == len(names) - 10 and all(s.kind == "no-label" for s in skipped)
    assert any("tie (A:D)" in r for r in reasons) and any("unknown FaceVote 'X'" in r for r in reasons)
    assert any("no FaceVote" in r for r in reasons)


def test_real_clips_faces_found_and_previews(crema_sample, tmp_path):
    cfg = PrepareConfig(root=str(crema_sample), cache_dir=str(tmp_path / "cache"), workers=1)
    logs = []
    prepared = prepare(cfg, progress=False, log=logs.append)
    assert len(prepared.items) == 6 and all(it["face_detected"] for it in prepared.items)
    assert {it["split"] for it in prepared.items} == {"test"}  # one actor: evaluation only, and said so
    assert any("all 6 clips go to the test split" in line for line in logs)
    assert prepared.items[0]["meta"]["race"] == "Caucasian"
    paths = save_previews(prepared, tmp_path / "previews")
    assert sorted(p.name for p in paths) == sorted(
        f"{it['source'].rsplit('/', 1)[-1][:-4]}.png" for it in prepared.items
    )
    import cv2

    sheet = cv2.imread(str(paths[0]), cv2.IMREAD_GRAYSCALE)
    assert sheet.shape[1] == 16 * 50 * 2  # 16 crops of 48+2 border pixels, drawn at 2x
