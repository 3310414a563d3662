import os
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


# --- media files: regular files only, symlinks followed only inside their root ---------------

def test_symlink_inside_the_root_is_followed_and_its_real_path_recorded(tmp_path: Path,
                                                                        media: Path):
    (tmp_path / "masters").mkdir()
    real = tmp_path / "masters" / "real.mp4"
    real.write_bytes(b"x")
    (tmp_path / "link.mp4").symlink_to(real)
    cat = load_manifest(write(tmp_path, HEADER + "S,e1,,,link.mp4,,\n"), environ={})
    assert cat.episodes[0].media_path == str(real.resolve())


@pytest.mark.parametrize("make, message", [
    (lambda d: (d / "x.mp4").symlink_to("/etc/passwd"),
     "is a symlink to /etc/passwd, outside"),
    (lambda d: (d / "x.mp4").symlink_to(d.parent / "outside.mp4"), "outside"),
    (lambda d: (d / "x.mp4").symlink_to(d / "nowhere.mp4"), "media file not found"),
    (lambda d: (d / "x.mp4").mkdir(), "is a directory, not a regular file"),
    (lambda d: os.mkfifo(d / "x.mp4"), "is a FIFO, not a regular file"),
])
def test_unsafe_media_in_a_manifest_is_a_problem_of_its_row(tmp_path: Path, make, message):
    folder = tmp_path / "catalogue"
    folder.mkdir()
    (tmp_path / "outside.mp4").write_bytes(b"x")
    make(folder)
    with pytest.raises(ManifestError) as err:
        load_manifest(write(folder, HEADER + "S,e1,,,x.mp4,,\n"), environ={})
    assert "1 problem(s)" in str(err.value)
    assert "m.csv:2: " in str(err.value) and message in str(err.value)


def test_absolute_paths_name_any_folder_but_the_file_may_not_link_out_of_it(tmp_path: Path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "ok.mp4").write_bytes(b"x")
    (elsewhere / "out.mp4").symlink_to("/etc/passwd")
    folder = tmp_path / "catalogue"
    folder.mkdir()
    cat = load_manifest(write(folder, HEADER + f"S,e1,,,{elsewhere / 'ok.mp4'},,\n"
                                               "S,e2,,,../elsewhere/ok.mp4,,\n"), environ={})
    assert {e.media_path for e in cat.episodes} == {str((elsewhere / "ok.mp4").resolve())}
    with pytest.raises(ManifestError) as err:
        load_manifest(write(folder, HEADER + f"S,e1,,,{elsewhere / 'out.mp4'},,\n"
                                             "S,e2,,,/dev/null,,\n"), environ={})
    text = str(err.value)
    assert "2 problem(s)" in text and "m.csv:2: " in text and "symlink to /etc/passwd" in text
    assert "m.csv:3: media path /dev/null is a character device, not a regular file" in text


def test_every_problem_of_a_row_is_reported(tmp_path: Path):
    os.mkfifo(tmp_path / "pipe.mp4")
    m = write(tmp_path, HEADER + "S,e@1,,2020-13-45,pipe.mp4,abc,\n")
    with pytest.raises(ManifestError) as err:
        load_manifest(m, environ={})
    text = str(err.value)
    assert "4 problem(s)" in text
    for problem in ("may not contain '@'", "is a FIFO", "bad air_date", "start_s must be"):
        assert "m.csv:2: " in text and problem in text


def test_folder_scan_skips_what_leaves_the_root_or_is_not_a_regular_file(tmp_path: Path):
    root = tmp_path / "root"
    show = root / "Show"
    show.mkdir(parents=True)
    (show / "good.mp4").write_bytes(b"x")
    (root / "masters").mkdir()
    (root / "masters" / "m.mp4").write_bytes(b"x")
    (show / "inside.mp4").symlink_to(root / "masters" / "m.mp4")
    (show / "passwd.mp4").symlink_to("/etc/passwd")
    (tmp_path / "secret.mp4").write_bytes(b"x")
    (show / "secret.mp4").symlink_to(tmp_path / "secret.mp4")
    os.mkfifo(show / "pipe.mp4")
    (show / "dir.mp4").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "o.mp4").write_bytes(b"x")
    (root / "Linked").symlink_to(tmp_path / "out")  # a programme folder leading out
    cat = scan_folder(root)
    assert {e.id: e.media_path for e in cat.episodes} == {
        "show-good": str((show / "good.mp4").resolve()),
        "show-inside": str((root / "masters" / "m.mp4").resolve()),
        "masters-m": str((root / "masters" / "m.mp4").resolve())}
    assert len(cat.skipped) == 5
    real_root = str(root.resolve()) + os.sep
    assert all(e.media_path.startswith(real_root) for e in cat.episodes)
