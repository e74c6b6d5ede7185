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


def test_metadata_csvs_that_are_pointers_short_or_headerless_are_named(tmp_path):
    import pytest

    from vemo.data.sources.crema_d import read_demographics, read_face_votes

    (tmp_path / "processedResults").mkdir()
    table = tmp_path / "processedResults" / "summaryTable.csv"
    table.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 9\n")
    with pytest.raises(ValueError, match=r"summaryTable\.csv: Git LFS pointer file .* not the CSV"):
        read_face_votes(tmp_path)
    table.write_text("Name,Vote\n1001_DFA_ANG_XX,A\n")
    with pytest.raises(ValueError, match=r"summaryTable\.csv: no column FileName, FaceVote"):
        read_face_votes(tmp_path)
    table.write_text('"","FileName","FaceVote"\n"1","1001_DFA_ANG_XX","A"\n"2","1001_DFA_HAP_XX"\n')  # a short row
    assert read_face_votes(tmp_path) == {"1001_DFA_ANG_XX": "A", "1001_DFA_HAP_XX": ""}  # '' reads as no vote
    (tmp_path / "VideoDemographics.csv").write_bytes(b"\xef\xbb\xbfActorID,Age\n1001,51,extra\n\n")  # BOM, long row
    assert read_demographics(tmp_path) == {"1001": {"age": "51"}}


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
