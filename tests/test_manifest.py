from pathlib import Path

import pytest

from indexer.catalogue import ManifestError, load_catalogue, load_manifest, scan_folder

HEADER = "programme,episode_id,title,air_date,media_path,start_s,end_s\n"


@pytest.fixture()
def media(tmp_path: Path) -> Path:
    f = tmp_path / "a.mp4"
    f.write_bytes(b"x")
    return f


def write(tmp_path: Path, text: str, name: str = "m.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_valid_csv_and_relative_and_env_paths(tmp_path: Path, media: Path):
    m = write(tmp_path, HEADER + "Show A,e1,One,2020-01-02,a.mp4,0,5\n"
                                 "Show A,e2,Two,,${MEDIA}/a.mp4,5,\n")
    cat = load_manifest(m, environ={"MEDIA": str(tmp_path)})
    assert [p.id for p in cat.programmes] == ["show-a"]
    e1, e2 = cat.episodes
    assert e1.air_date.isoformat() == "2020-01-02" and (e1.start_s, e1.end_s) == (0.0, 5.0)
    assert e2.air_date is None and e2.end_s is None
    assert Path(e1.media_path) == media.resolve() == Path(e2.media_path)


def test_jsonl(tmp_path: Path, media: Path):
    m = write(tmp_path, '{"programme": "P", "episode_id": "x", "media_path": "a.mp4"}\n\n',
              "m.jsonl")
    assert load_catalogue(m).episodes[0].id == "x"


@pytest.mark.parametrize("row, message", [
    ("Show,e1,One,2020-01-02,missing.mp4,,\n", "media file not found"),
    ("Show,e1,One,2020-13-45,a.mp4,,\n", "bad air_date '2020-13-45'"),
    ("Show,e1,One,,a.mp4,5,2\n", "end_s (2.0) must be after start_s (5.0)"),
    ("Show,e1,One,,a.mp4,abc,\n", "start_s must be a number"),
    (",e1,One,,a.mp4,,\n", "missing programme"),
    ("Show,e1,One,,${NOPE}/a.mp4,,\n", "environment variable NOPE is not set"),
])
def test_row_errors_name_line_and_problem(tmp_path: Path, media: Path, row: str, message: str):
    m = write(tmp_path, HEADER + row)
    with pytest.raises(ManifestError) as err:
        load_manifest(m, environ={})
    assert "m.csv:2" in str(err.value) and message in str(err.value)


def test_duplicate_episode_and_all_errors_reported_together(tmp_path: Path, media: Path):
    m = write(tmp_path, HEADER + "S,e1,,,a.mp4,,\nS,e1,,,a.mp4,,\nS,e2,,,nope.mp4,,\n")
    with pytest.raises(ManifestError) as err:
        load_manifest(m, environ={})
    text = str(err.value)
    assert "2 problem(s)" in text and "m.csv:3: duplicate episode_id 'e1'" in text
    assert "m.csv:4: media file not found" in text


def test_unknown_column_and_bad_format(tmp_path: Path, media: Path):
    with pytest.raises(ManifestError, match=r"unknown column\(s\) \['colour'\]"):
        load_manifest(write(tmp_path, "programme,episode_id,media_path,colour\nS,e,a.mp4,red\n"))
    with pytest.raises(ManifestError, match="unknown column"):
        load_manifest(write(tmp_path, '{"programme":"P","episode_id":"x","media_path":"a.mp4",'
                                      '"x":1}\n', "m.jsonl"))
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_manifest(write(tmp_path, "{nope\n", "m.jsonl"))
    with pytest.raises(ManifestError, match=".csv or .jsonl"):
        load_manifest(write(tmp_path, "x", "m.txt"))


def test_folder_tree(tmp_path: Path):
    (tmp_path / "Morning Show").mkdir()
    (tmp_path / "Morning Show" / "Ep 1.mp4").write_bytes(b"x")
    (tmp_path / "Morning Show" / "notes.txt").write_text("x")
    cat = scan_folder(tmp_path)
    assert [(e.id, e.programme_id) for e in cat.episodes] == [("morning-show-ep-1",
                                                              "morning-show")]
    with pytest.raises(ManifestError, match="no video files"):
        scan_folder(tmp_path / "Morning Show")
