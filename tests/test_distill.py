"""Distillation: losses by hand, eq. 5.1, nDCG against sklearn, the split by source, the
transfer-set cache, and a short training run whose checkpoint the ``student`` tagger runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from sklearn.metrics import ndcg_score
from test_student import OBJECTS, SCENES, student_settings, write_student_checkpoint

from indexer.taggers import tagger_from_settings
from indexer.taggers.student import build_student, read_checkpoint, write_checkpoint
from training.distill.config import load_train_config
from training.distill.evaluate import evaluate_tagger
from training.distill.fit import TrainError, fit
from training.distill.losses import (
    HeadAwareLoss,
    MergedRMSELoss,
    SplitRMSELoss,
    create_loss,
    minmax_scale,
    soft_bce,
)
from training.distill.transfer import (
    ExtractParams,
    TransferError,
    TransferSet,
    discover_sources,
    extract,
    split_of,
)
from training.evaluation.metrics import head_metrics, ndcg_at_k
from tvindex.core.labels import LabelSet
from tvindex.settings import ConfigError

OBJ2 = LabelSet("obj", "sigmoid", ("a", "b"))
SCN2 = LabelSet("scn", "softmax", ("x", "y"))


def t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


# --- equation 5.1 and the losses, against values computed by hand ------------------------

def test_minmax_scale_is_equation_5_1():
    # x in [0, 10] onto t's range [-2, 6]: (x - 0) / 10 * 8 - 2.
    out = minmax_scale(t([[0, 5, 10], [1, 1, 1]]), t([[-2, 0, 2, 6], [3, 4, 5, 7]]))
    assert out[0].tolist() == pytest.approx([-2.0, 2.0, 6.0])
    assert out[1].tolist() == pytest.approx([3.0, 3.0, 3.0])  # constant row -> min t, no NaN


def test_merged_rmse_by_hand():
    loss = MergedRMSELoss([OBJ2, SCN2])  # reference = the softmax head
    teacher = {"obj": t([[0, 4]]), "scn": t([[1, 3]])}  # obj scaled into [1, 3] -> [1, 3]
    student = {"obj": t([[1, 1]]), "scn": t([[1, 1]])}
    total, parts = loss(student, teacher)
    # target [1, 3, 1, 3], prediction [1, 1, 1, 1]: mse = (0 + 4 + 0 + 4) / 4 = 2
    assert float(total) == pytest.approx(math.sqrt(2), rel=1e-5)
    assert loss.target_space("obj") == "minmax-scaled" and loss.target_space("scn") == "logits"
    assert float(parts["obj"]) == pytest.approx(math.sqrt(2), rel=1e-5)


def test_split_rmse_by_hand_with_alpha_beta():
    loss = SplitRMSELoss([OBJ2, SCN2], weights={"obj": 2.0, "scn": 0.5})
    teacher = {"obj": t([[3, 4]]), "scn": t([[1, 3]])}
    student = {"obj": t([[0, 0]]), "scn": t([[1, 1]])}
    total, parts = loss(student, teacher)
    obj, scn = math.sqrt((9 + 16) / 2), math.sqrt((0 + 4) / 2)
    assert float(parts["obj"]) == pytest.approx(obj, rel=1e-5)
    assert float(total) == pytest.approx(2.0 * obj + 0.5 * scn, rel=1e-5)
    with pytest.raises(ValueError, match="unknown head"):
        SplitRMSELoss([OBJ2], weights={"places": 1.0})


def _head_aware_inputs():
    # obj: student logits [ln 3, 0] (p = .75, .5) vs teacher [0, 0] (q = .5, .5): the BCE is
    # (-(.5 ln .75 + .5 ln .25) + ln 2) / 2 = 0.765068, its floor (the teacher's entropy) ln 2.
    # scn at T = 2: teacher [0, 2 ln 3] -> softmax([0, ln 3]) = [.25, .75]; student uniform.
    student = {"obj": t([[math.log(3), 0.0]]), "scn": t([[0.0, 0.0]])}
    teacher = {"obj": t([[0.0, 0.0]]), "scn": t([[0.0, 2 * math.log(3)]])}
    bce = (-(0.5 * math.log(0.75) + 0.5 * math.log(0.25)) + math.log(2)) / 2 - math.log(2)
    kl = (0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)) * 2 ** 2
    return student, teacher, bce, kl


def test_head_aware_bce_and_kl_by_hand():
    student, teacher, bce, kl = _head_aware_inputs()
    loss = HeadAwareLoss([OBJ2, SCN2], temperature=2.0, balance="none")
    total, parts = loss(student, teacher)
    assert float(parts["obj"]) == pytest.approx(bce, rel=1e-5)  # 0.765068 - ln 2 = 0.071921
    assert float(parts["scn"]) == pytest.approx(kl, rel=1e-5)  # 0.523248
    assert float(total) == pytest.approx(bce + kl, rel=1e-5)
    assert float(soft_bce(student["obj"], teacher["obj"])) == pytest.approx(0.765068, rel=1e-5)
    # At the teacher's own logits the head loss is 0 (BCE at its floor, KL 0).
    zero, _ = loss(teacher, teacher)
    assert float(zero) == pytest.approx(0.0, abs=1e-6)


def test_sigmoid_temperature_softens_and_tends_to_logit_matching():
    s, te = t([[1.0, -3.0]]), t([[2.0, -6.0]])
    at1 = HeadAwareLoss([OBJ2], balance="none", sigmoid_temperature=1.0)({"obj": s}, {"obj": te})
    assert float(at1[0]) == pytest.approx(float(soft_bce(s, te)) - float(soft_bce(te, te)),
                                          rel=1e-5)
    # T = 2 by hand: T^2 * (BCE(s/2, sigmoid(t/2)) - H(sigmoid(t/2))), per label, averaged.
    def bkl(a: float, b: float) -> float:
        q, p = 1 / (1 + math.exp(-b)), 1 / (1 + math.exp(-a))
        return q * math.log(q / p) + (1 - q) * math.log((1 - q) / (1 - p))
    at2 = HeadAwareLoss([OBJ2], balance="none", sigmoid_temperature=2.0)({"obj": s}, {"obj": te})
    assert float(at2[0]) == pytest.approx(4 * (bkl(0.5, 1.0) + bkl(-1.5, -3.0)) / 2, rel=1e-4)
    big = HeadAwareLoss([OBJ2], balance="none", sigmoid_temperature=200.0)({"obj": s},
                                                                           {"obj": te})
    assert float(big[0]) == pytest.approx(((1 - 2) ** 2 + (-3 + 6) ** 2) / 8 / 2, rel=1e-3)


def test_head_aware_balancing_by_initial_loss_and_uncertainty():
    student, teacher, bce, kl = _head_aware_inputs()
    loss = HeadAwareLoss([OBJ2, SCN2], temperature=2.0, balance="initial",
                         balance_batches=2).train()
    total, _ = loss(student, teacher)
    assert float(total) == pytest.approx(2.0, rel=1e-5)  # each head starts at 1
    assert loss.initial.tolist() == pytest.approx([bce, kl], rel=1e-5)
    half = {"obj": teacher["obj"], "scn": student["scn"]}  # obj loss falls to 0, scn stays
    total2, parts2 = loss(half, teacher)
    # Scales: the mean of the first two batches, then fixed.
    assert float(parts2["obj"]) == pytest.approx(0.0, abs=1e-6)
    assert loss.initial.tolist() == pytest.approx([bce / 2, kl], rel=1e-4)
    assert float(total2) == pytest.approx(1.0, rel=1e-4)
    total3, _ = loss(student, teacher)
    assert float(total3) == pytest.approx(bce / (bce / 2) + 1.0, rel=1e-4)
    assert loss.initial.tolist() == pytest.approx([bce / 2, kl], rel=1e-4)
    restored = HeadAwareLoss([OBJ2, SCN2], balance="initial")
    restored.load_state_dict(loss.state_dict())  # a resumed run keeps the scales
    assert restored.initial.tolist() == loss.initial.tolist()
    assert int(restored.initial_count) == 2

    unc = HeadAwareLoss([OBJ2, SCN2], temperature=2.0, balance="uncertainty")
    with torch.no_grad():
        unc.log_vars.copy_(t([1.0, -0.5]))
    total, _ = unc(student, teacher)
    assert float(total.detach()) == pytest.approx(math.exp(-1) * bce + 1 + math.exp(0.5) * kl - 0.5,
                                         rel=1e-5)
    assert any(p is unc.log_vars for p in unc.parameters())


def test_losses_by_name_and_gradients_flow():
    for name in ("merged", "split", "head-aware"):
        loss = create_loss(name, [OBJ2, SCN2]).train()
        s = {"obj": t([[0.3, -1.0]]).requires_grad_(), "scn": t([[2.0, 0.5]]).requires_grad_()}
        total, _ = loss(s, {"obj": t([[1.0, -2.0]]), "scn": t([[0.0, 1.0]])})
        total.backward()
        assert s["obj"].grad.abs().sum() > 0 and s["scn"].grad.abs().sum() > 0
    with pytest.raises(ValueError, match="unknown loss"):
        create_loss("mse", [OBJ2])


# --- nDCG: one gain for DCG and ideal DCG, checked against sklearn ------------------------

def test_ndcg_wikipedia_example():
    # Wikipedia's worked example (linear gain): relevances 3,2,3,0,1,2 in ranked order give
    # DCG 6.861; the ideal order of these six, 3,3,2,2,1,0, gives IDCG 7.141. (Wikipedia's
    # 8.740 also counts two relevant documents outside the list; here every label is ranked.)
    rel = np.array([[3, 2, 3, 0, 1, 2]], float)
    scores = np.array([[6, 5, 4, 3, 2, 1]], float)
    dcg = 3 + 2 / math.log2(3) + 3 / 2 + 0 + 1 / math.log2(6) + 2 / math.log2(7)
    idcg = 3 + 3 / math.log2(3) + 2 / 2 + 2 / math.log2(5) + 1 / math.log2(6)
    assert dcg == pytest.approx(6.861, abs=1e-3) and idcg == pytest.approx(7.141, abs=1e-3)
    assert ndcg_at_k(rel, scores, 6)[0] == pytest.approx(dcg / idcg, rel=1e-12)
    assert ndcg_at_k(rel, scores, 3)[0] == pytest.approx(
        (3 + 2 / math.log2(3) + 3 / 2) / (3 + 3 / math.log2(3) + 2 / 2), rel=1e-12)


@pytest.mark.parametrize("k", [1, 5, 10])
def test_ndcg_matches_sklearn(k: int):
    rng = np.random.default_rng(k)
    rel = rng.random((40, 80)) ** 3  # teacher probabilities: mostly small
    scores = rng.normal(size=(40, 80))  # student logits (continuous: no ties)
    ours = ndcg_at_k(rel, scores, k)
    assert ours.mean() == pytest.approx(ndcg_score(rel, scores, k=k), abs=1e-9)
    np.testing.assert_allclose(ours, [ndcg_score(r[None], s[None], k=k)
                                      for r, s in zip(rel, scores)], atol=1e-9)
    # The exponential gain is sklearn's on transformed relevances: same gain in DCG and IDCG.
    exp = ndcg_at_k(rel, scores, k, "exponential").mean()
    assert exp == pytest.approx(ndcg_score(np.exp2(rel) - 1, scores, k=k), abs=1e-9)
    assert (ours >= 0).all() and (ours <= 1 + 1e-12).all()


def test_head_metrics_use_the_heads_activation():
    teacher = np.array([[5.0, 0.0, -5.0], [0.0, 3.0, 1.0]], np.float32)
    student = np.array([[1.0, 0.5, 0.0], [2.0, 1.0, 0.0]], np.float32)
    soft = LabelSet("s", "softmax", ("a", "b", "c"))
    m = head_metrics(soft, teacher, student, ks=(2,))
    assert m["top1"] == 0.5 and m["frames"] == 2
    assert m["ndcg@2"] == pytest.approx(ndcg_score(soft.probabilities(teacher), student, k=2))
    sig = LabelSet("o", "sigmoid", ("a", "b", "c"))
    assert head_metrics(sig, teacher, student, ks=(2,))["ndcg@2"] == pytest.approx(
        ndcg_score(sig.probabilities(teacher), student, k=2))


# --- sources and the split ----------------------------------------------------------------

def _photo(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    img = np.zeros((48, 64, 3), np.uint8)
    img[:] = rng.integers(0, 255, 3)
    cv2.rectangle(img, (int(rng.integers(0, 30)), 8), (int(rng.integers(34, 63)), 40),
                  tuple(int(c) for c in rng.integers(0, 255, 3)), -1)
    cv2.imwrite(str(path), img)


def _video(path: Path, seconds: int, fps: int = 5) -> None:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(seconds * fps):
            img = np.full((48, 64, 3), (i * 7) % 255, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    """48 photos in 16 groups of numbered variants (provenance.csv), and two short videos."""
    root = tmp_path_factory.mktemp("media")
    lines = ["file,package,original_path"]
    for g in range(16):
        for v in range(1, 4):
            name = f"pkg__subject{g}_{v}.jpg"
            _photo(root / name, g * 10 + v)
            lines.append(f"{name},pkg,/data/subject{chr(97 + g)}{v}.png")
    (root / "provenance.csv").write_text("\n".join(lines) + "\n")
    _video(root / "clip_a.mp4", 3)
    _video(root / "clip_b.mp4", 2)
    return root


def test_split_is_by_source_group_and_deterministic(media: Path):
    sources = discover_sources([media])
    assert len(sources) == 50
    groups = {s.group for s in sources}
    assert len(groups) == 18  # 16 photo subjects (variants together) + 2 videos
    assert all(split_of(g, 0, 0.2, 0.3) == split_of(g, 0, 0.2, 0.3) for g in groups)
    splits = [split_of(f"group-{i}", 0, 0.2, 0.3) for i in range(3000)]
    assert abs(splits.count("test") / 3000 - 0.3) < 0.04
    assert abs(splits.count("val") / 3000 - 0.2) < 0.04
    with pytest.raises(TransferError, match="no such file"):
        discover_sources([media / "missing"])


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory) -> Path:
    """A tiny random network standing in for both teachers: a real tagger, fast. Its heads
    are scaled up so its logits differ from frame to frame (something to learn)."""
    path = write_student_checkpoint(tmp_path_factory.mktemp("teacher"), seed=7, image_size=32)
    data = read_checkpoint(path)
    model = build_student(data)
    with torch.no_grad():
        for head in model.heads:
            head.weight.mul_(300.0)
    meta = {k: v for k, v in data.items()
            if k not in ("state_dict", "format", "version", "feature_dim")}
    return write_checkpoint(path, model, meta)


@pytest.fixture(scope="module")
def transfer(media: Path, teacher_ckpt: Path, tmp_path_factory) -> Path:
    teacher = tagger_from_settings("student", student_settings(teacher_ckpt))
    out = tmp_path_factory.mktemp("transfer") / "ts"
    params = ExtractParams(every_s=1.0, shard_size=7, val=0.25, test=0.25, views=2, seed=3)
    report = extract(discover_sources([media]), [teacher], out, params, batch_size=5,
                     progress=False)
    assert report.new_frames == sum(report.frames.values()) + report.frames["train"]
    return out


def test_transfer_set_keeps_every_source_in_one_split(transfer: Path):
    ts = TransferSet(transfer)
    rows = list(ts.rows(views=True))
    assert len(ts.shards) == math.ceil(len(rows) / 7) > 1  # sharded
    by_group: dict[str, set[str]] = {}
    for r in rows:
        by_group.setdefault(r.group, set()).add(r.split)
        by_group.setdefault(r.source, set()).add(r.split)
        assert r.split == split_of(r.group, 3, 0.25, 0.25)
        assert r.view == 0 or r.split == "train"  # extra views only for training frames
    assert all(len(s) == 1 for s in by_group.values())
    assert {r.split for r in rows} == {"train", "val", "test"}
    assert sum(1 for r in rows if r.kind == "video" and r.view == 0) == 5  # 3 s + 2 s at 1 s
    r = rows[0]
    assert r.image().ndim == 3 and r.logits["objects"].shape == (4,)
    meta = json.loads((transfer / "index.json").read_text())
    assert [s["teacher"]["name"] for s in meta["label_sets"]] == ["student", "student"]


def test_extraction_resumes_and_refuses_a_different_set(transfer: Path, media: Path,
                                                        teacher_ckpt: Path, tmp_path: Path):
    teacher = tagger_from_settings("student", student_settings(teacher_ckpt))
    params = ExtractParams(every_s=1.0, shard_size=7, val=0.25, test=0.25, views=2, seed=3)
    before = TransferSet(transfer).counts(views=True)
    again = extract(discover_sources([media]), [teacher], transfer, params, progress=False)
    assert again.new_frames == 0 and TransferSet(transfer).counts(views=True) == before
    other = ExtractParams(every_s=0.5, shard_size=7, val=0.25, test=0.25, views=2, seed=3)
    with pytest.raises(TransferError, match="different transfer set"):
        extract(discover_sources([media]), [teacher], transfer, other, progress=False)
    # A crash after some shards: the next run adds only what is missing.
    partial = tmp_path / "partial"
    extract(discover_sources([media])[:9], [teacher], partial, params, progress=False)
    rest = extract(discover_sources([media]), [teacher], partial, params, progress=False)
    assert TransferSet(partial).counts(views=True) == before
    assert rest.skipped_frames > 0


# --- a short training run, end to end -----------------------------------------------------

def _config(transfer: Path, out: Path, **over):
    base = {"name": "tiny", "transfer": str(transfer), "output_dir": str(out),
            "student.arch": "test_efficientnet", "student.image_size": 32,
            "student.mean": [0.5, 0.5, 0.5], "student.std": [0.5, 0.5, 0.5],
            "optim.epochs": 2, "optim.batch_size": 8, "optim.lr": 0.01, "optim.warmup_epochs": 0,
            "augment.color": 0.0, "augment.hue_deg": 0.0, "augment.scale": [0.8, 1.0]}
    base.update(over)
    return load_train_config(None, base)


def test_two_epochs_lower_the_loss_and_the_tagger_runs_the_checkpoint(transfer: Path,
                                                                      tmp_path: Path):
    cfg = _config(transfer, tmp_path / "runs")
    result = fit(cfg, student_settings(tmp_path / "unused.pt"), progress=False)
    losses = [h["train"]["loss"] for h in result.history]
    assert len(losses) == 2 and losses[1] < losses[0]
    run = tmp_path / "runs" / "tiny"
    assert {"config.yaml", "history.jsonl", "last.pt", "best.pt"} <= {p.name for p in
                                                                     run.iterdir()}
    assert load_train_config(run / "config.yaml") == cfg  # the resolved config reproduces it

    student = tagger_from_settings("student", student_settings(result.best_checkpoint))
    meta = student.meta
    assert meta["loss"]["name"] == "head-aware" and meta["image_size"] == 32
    assert meta["label_sets"][0]["teacher"]["name"] == "student"
    assert "val" in meta["metrics"] and meta["config"]["optim"]["epochs"] == 2
    frame = np.zeros((72, 128, 3), np.uint8)
    out = student.predict([frame, frame])
    assert out["objects"].shape == (2, 4) and out["scenes"].shape == (2, 3)
    report = evaluate_tagger(student, TransferSet(transfer), "test")
    for head in ("objects", "scenes"):
        m = report["heads"][head]["all"]
        assert m["frames"] == report["frames"] > 0
        assert 0 <= m["top1"] <= 1 and 0 < m["ndcg@5"] <= 1 and 0 < m["ndcg@10"] <= 1


def test_linear_probe_then_fine_tuning(transfer: Path, tmp_path: Path):
    cfg = _config(transfer, tmp_path / "runs", **{"optim.probe_epochs": 3, "optim.epochs": 1,
                                                  "loss.name": "split"})
    result = fit(cfg, student_settings(tmp_path / "unused.pt"), progress=False)
    assert [h["epoch"] for h in result.history] == [-1, 0]
    assert result.history[0]["stage"] == "probe" and result.history[0]["train"]["loss"] > 0
    assert result.best_checkpoint is not None and result.best_checkpoint.exists()
    # The probe alone (a frozen backbone), then resumed into fine-tuning without re-probing.
    only = _config(transfer, tmp_path / "runs", **{"name": "probe", "optim.probe_epochs": 2,
                                                   "optim.epochs": 0})
    assert fit(only, student_settings(tmp_path / "unused.pt"), progress=False).best_epoch == -1
    more = _config(transfer, tmp_path / "runs", **{"name": "probe", "optim.probe_epochs": 2,
                                                   "optim.epochs": 1})
    resumed = fit(more, student_settings(tmp_path / "unused.pt"), resume=True, progress=False)
    assert [h["epoch"] for h in resumed.history] == [-1, 0]


def test_speed_is_measured_on_the_same_frames(teacher_ckpt: Path, tmp_path: Path):
    from training.distill.evaluate import measure_speed

    teacher = tagger_from_settings("student", student_settings(teacher_ckpt))
    student = tagger_from_settings("student", student_settings(write_student_checkpoint(tmp_path)))
    frames = [np.zeros((72, 128, 3), np.uint8)] * 6
    out = measure_speed(frames, student, [teacher], repeats=3)
    assert out["frames"] == 6 and out["repeats"] == 3
    assert out["student_fps"] > 0 and out["teachers_fps"] > 0 and out["ratio"] > 0
    assert out["ratio_best"] > 0 and "load_avg_1m" in out["machine"]
    assert len(out["per_tagger_fps"]) == 2  # two taggers of one kind are told apart


def test_limits_teacher_self_agreement_and_data_scaling(transfer: Path, teacher_ckpt: Path,
                                                       tmp_path: Path):
    from training.distill.limits import (
        data_scaling,
        per_doubling,
        scaling_summary,
        teacher_self_agreement,
    )

    ts = TransferSet(transfer)
    teacher_settings = student_settings(teacher_ckpt)
    # The tiny teacher reads 32 px stretched: the student's view at 32 px stretched is the
    # teacher's own input, so it must agree exactly as well as the stored frame does.
    agree = teacher_self_agreement(ts, teacher_settings, 32, "stretch")
    assert set(agree) == {"stored", "mirrored", "student_view"}
    assert agree["student_view"] == agree["stored"]
    for variant in agree.values():
        for head in ("objects", "scenes"):
            m = variant[head]
            assert m["frames"] == ts.count("test") and 0 <= m["ndcg@5"] <= 1
    # A centre cut of 16 px loses most of the frame: the teacher agrees less with itself.
    cut = teacher_self_agreement(ts, teacher_settings, 16, "center_crop")["student_view"]
    assert sum(cut[h]["ndcg@5"] for h in ("objects", "scenes")) < sum(
        agree["stored"][h]["ndcg@5"] for h in ("objects", "scenes"))

    cfg = _config(transfer, tmp_path / "runs", **{"optim.probe_epochs": 3, "loss.name": "split"})
    results = data_scaling(cfg, ts, student_settings(tmp_path / "unused.pt"), [0.5, 1.0],
                           seeds=[0, 1], progress=False)
    groups = {r.group for r in ts.rows("train")}
    # Each seed's half, then the whole train split once.
    assert [(r["fraction"], r["seed"]) for r in results] == [(0.5, 0), (1.0, None), (0.5, 1)]
    half, whole = results[0], results[1]
    assert half["groups"] == results[2]["groups"] == math.ceil(len(groups) / 2)
    assert whole["groups"] == len(groups)
    assert half["train_images"] < whole["train_images"] == ts.count("train", views=True)
    for r in results:
        assert 0 < r["test"]["objects"]["ndcg@5"] <= 1 and r["test"]["scenes"]["frames"] > 0
    slope = per_doubling(results[:2], "objects")
    expected = (whole["test"]["objects"]["ndcg@5"] - half["test"]["objects"]["ndcg@5"]
                ) / math.log2(whole["groups"] / half["groups"])
    assert slope == pytest.approx(expected, abs=1e-4)
    summary = scaling_summary(results, "objects")
    values = [half["test"]["objects"]["ndcg@5"], results[2]["test"]["objects"]["ndcg@5"]]
    assert summary[0]["runs"] == 2 and summary[0]["min"] == pytest.approx(min(values))
    assert summary[0]["mean"] == pytest.approx(np.mean(values), abs=1e-4)
    assert summary[-1]["groups"] == len(groups) and summary[-1]["runs"] == 1
    assert per_doubling(results[:1], "objects") is None


def test_resume_continues_and_refuses_to_overwrite(transfer: Path, tmp_path: Path):
    settings = student_settings(tmp_path / "unused.pt")
    cfg = _config(transfer, tmp_path / "runs", **{"loss.name": "merged", "optim.epochs": 1})
    fit(cfg, settings, progress=False)
    with pytest.raises(TrainError, match="already holds a run"):
        fit(cfg, settings, progress=False)
    longer = _config(transfer, tmp_path / "runs", **{"loss.name": "merged", "optim.epochs": 2})
    result = fit(longer, settings, resume=True, progress=False)
    assert [h["epoch"] for h in result.history] == [0, 1]
    meta = tagger_from_settings("student", student_settings(result.best_checkpoint)).meta
    assert meta["label_sets"][0]["target"] == "minmax-scaled"  # merged: objects rescaled
    changed = _config(transfer, tmp_path / "runs", **{"loss.name": "split", "optim.epochs": 3})
    with pytest.raises(TrainError, match="configuration differs"):
        fit(changed, settings, resume=True, progress=False)


def test_training_config_is_validated(tmp_path: Path):
    with pytest.raises(ConfigError, match="optim.lrr: unknown key"):
        load_train_config(None, {"optim.lrr": 1})
    with pytest.raises(ConfigError, match="loss.name"):
        load_train_config(None, {"loss.name": "mse"})
    with pytest.raises(ConfigError, match="epochs"):
        load_train_config(None, {"optim.epochs": 0, "optim.probe_epochs": 0})
    from training.genres.config import load_genre_config

    for path in sorted(Path(__file__).parent.parent.glob("config/train/*.yaml")):
        # every shipped configuration is valid: the genre models' (genres-*.yaml) and the
        # student's (the rest)
        (load_genre_config if path.name.startswith("genres-") else load_train_config)(path)


def test_student_objects_and_scenes_fixture_sets_are_distinct():
    assert OBJECTS.name != SCENES.name
