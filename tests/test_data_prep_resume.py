"""Tests of `--resume` (data_prep/resume.py through common.write_split): an interrupted
conversion continues from its verified shards and ends byte-identical to an
uninterrupted one."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from conftest import folder_bytes, run_module
from data_prep import check, common, eye_simulator, images, resume
from simgan_tf.data import schema
from simgan_tf.data import writer as writer_lib

# About 2.1 kB per 35x55 noise PNG record: 3 records per shard.
SHARD_BYTES = 5000


class Interrupted(Exception):
    """Stands for a Ctrl-C or a kill in the middle of a conversion."""


def _options(**kwargs):
    kwargs.setdefault("progress", False)
    kwargs.setdefault("workers", 1)
    kwargs.setdefault("shard_bytes", SHARD_BYTES)
    return common.ConvertOptions(**kwargs)


def _folders(root, num_synthetic=20, num_real=16):
    """PNG folders `synthetic/` and `real/` of noise images, one unreadable file in each."""
    rng = np.random.default_rng(0)
    folders = {}
    for name, count in (("synthetic", num_synthetic), ("real", num_real)):
        folder = os.path.join(root, name)
        os.makedirs(folder)
        for i in range(count):
            pixels = rng.integers(0, 256, (35, 55), dtype=np.uint8)
            Image.fromarray(pixels).save(os.path.join(folder, f"{i:03d}.png"))
        folders[name] = folder
    # Skipped as unreadable_image, in the first shard of synthetic/ and of real/.
    for split, name in (("synthetic", "004.png"), ("real", "001.png")):
        with open(os.path.join(folders[split], name), "wb") as f:
            f.write(b"not a png")
    return folders


def _convert(folders, out, **options):
    return images.convert(out, size=(35, 55), grayscale=True, resize="none",
                          synthetic_dir=folders["synthetic"], real_dir=folders["real"],
                          real_test_fraction=0.25, options=_options(**options))


def _interrupt_after(monkeypatch, shards):
    """Makes the conversion stop right after its `shards + 1`-th shard is closed and
    hashed, before the manifest lists it (the worst moment): `shards` are listed."""
    closed = []
    original = writer_lib.SplitWriter._close_shard

    def close_shard(self):
        original(self)
        closed.append(self._shards[-1]["file"])
        if len(closed) > shards:
            raise Interrupted(f"after {shards} shards")

    monkeypatch.setattr(writer_lib.SplitWriter, "_close_shard", close_shard)


def _interrupted_conversion(folders, out, monkeypatch, shards):
    """A conversion into `out` interrupted after `shards` listed shards."""
    _interrupt_after(monkeypatch, shards)
    with pytest.raises(Interrupted):
        _convert(folders, out)
    monkeypatch.undo()


def _count_reads(monkeypatch):
    reads = []
    original = images.read_pixels

    def read_pixels(path, settings):
        reads.append(os.path.basename(path))
        return original(path, settings)

    monkeypatch.setattr(images, "read_pixels", read_pixels)
    return reads


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The inputs and the output of an uninterrupted conversion."""
    root = str(tmp_path_factory.mktemp("inputs"))
    folders = _folders(root)
    out = os.path.join(root, "reference")
    summary = _convert(folders, out)
    return folders, out, summary


def _manifest(out, split):
    with open(os.path.join(resume.partial_dir(out, split), resume.MANIFEST_FILE)) as f:
        return json.load(f)


def test_resume_after_interruption_is_byte_identical(reference, tmp_path, monkeypatch):
    folders, ref_out, ref_summary = reference
    assert ref_summary.splits["synthetic"].shards == 7  # 19 records, 3 per shard.
    out = str(tmp_path / "data")
    # synthetic/ (7 shards) is published, real/ stops after 2 of its shards.
    _interrupt_after(monkeypatch, 7 + 2)
    with pytest.raises(Interrupted):
        _convert(folders, out)
    assert sorted(os.listdir(out)) == [".partial-real", "dataset.json", "synthetic"]
    partial = resume.partial_dir(out, "real")
    listed = [e["shard"]["file"] for e in _manifest(out, "real")["shards"]]
    assert listed == ["real-00000.tfrecord", "real-00001.tfrecord"]
    # The third shard was closed but not listed: discarded on resume.
    assert "real-00002.tfrecord" in os.listdir(partial)
    with open(os.path.join(partial, "real-00003.tfrecord"), "wb") as f:
        f.write(b"half-written")  # A shard cut by a kill.
    monkeypatch.undo()
    reads = _count_reads(monkeypatch)
    bars = []
    import tqdm

    original_tqdm = tqdm.tqdm
    monkeypatch.setattr(tqdm, "tqdm", lambda *a, **k: bars.append(k) or original_tqdm(*a, **k))
    summary = _convert(folders, out, resume=True)
    assert folder_bytes(out) == folder_bytes(ref_out)
    # synthetic/ was kept whole; real/ reused its 2 listed shards (6 records).
    assert summary.splits["real"].skipped == {"unreadable_image": 1}
    assert summary.splits["synthetic"].reused_shards == 7
    assert summary.splits["real"].reused_shards == 2
    assert "(2 shards reused)" in summary.format()
    real_keys = [k for k in sorted(os.listdir(folders["real"]))
                 if not common.held_out(k, 0.25)]
    real_test_keys = [k for k in sorted(os.listdir(folders["real"]))
                      if common.held_out(k, 0.25)]
    # Only the files after the finished shards (000, 001 skipped, 006, ..., 010) were
    # decoded again.
    assert real_keys[:3] == ["000.png", "001.png", "006.png"]
    assert reads == real_keys[7:] + real_test_keys
    assert [b["initial"] for b in bars] == [7, 0]  # real/ (synthetic/ had no bar), real_test/.
    for split, ref in ref_summary.splits.items():
        got = summary.splits[split]
        assert (got.written, got.skipped, got.examples, got.notes, got.shards) == (
            ref.written, ref.skipped, ref.examples, ref.notes, ref.shards), split


def test_corrupted_finished_shard_is_rewritten(reference, tmp_path, monkeypatch):
    folders, ref_out, _ = reference
    out = str(tmp_path / "data")
    _interrupt_after(monkeypatch, 4)  # In synthetic/: 4 shards listed.
    with pytest.raises(Interrupted):
        _convert(folders, out)
    monkeypatch.undo()
    assert len(_manifest(out, "synthetic")["shards"]) == 4
    shard = os.path.join(resume.partial_dir(out, "synthetic"), "synthetic-00002.tfrecord")
    data = bytearray(open(shard, "rb").read())
    data[100] ^= 0xFF  # Same size, other bytes: only the sha256 tells.
    open(shard, "wb").write(bytes(data))
    reads = _count_reads(monkeypatch)
    summary = _convert(folders, out, resume=True)
    # Shards 0 and 1 verified; 2 (corrupt) and 3 (after it) rewritten.
    assert summary.splits["synthetic"].reused_shards == 2
    assert reads[0] == "007.png"  # Shard 1 is 003, 005, 006 (004.png is skipped).
    assert folder_bytes(out) == folder_bytes(ref_out)


def test_missing_finished_shard_is_rewritten(reference, tmp_path, monkeypatch):
    folders, ref_out, _ = reference
    out = str(tmp_path / "data")
    _interrupted_conversion(folders, out, monkeypatch, 3)
    os.remove(os.path.join(resume.partial_dir(out, "synthetic"), "synthetic-00001.tfrecord"))
    summary = _convert(folders, out, resume=True)
    assert summary.splits["synthetic"].reused_shards == 1
    assert folder_bytes(out) == folder_bytes(ref_out)


def test_published_split_with_a_bad_shard_is_rewritten(reference, tmp_path):
    folders, ref_out, _ = reference
    out = str(tmp_path / "data")
    _convert(folders, out)
    shard = os.path.join(out, "real", "real-00000.tfrecord")
    open(shard, "ab").write(b"x")
    summary = _convert(folders, out, resume=True)
    assert summary.splits["synthetic"].reused_shards == 7
    assert summary.splits["real"].reused_shards == 0
    assert folder_bytes(out) == folder_bytes(ref_out)


@pytest.mark.parametrize("change,named", [
    (dict(size=(36, 55), resize="fit"), r"source\.options\.size: \[35, 55\] before, "
                                        r"\[36, 55\] now"),
    (dict(shard_bytes=9000), r"shard_bytes: 5000 before, 9000 now"),
    (dict(extra_file=True), r"inputs\.count: 20 before, 21 now; inputs\.sha256"),
])
def test_resume_with_other_options_is_refused(tmp_path, monkeypatch, change, named):
    folders = _folders(str(tmp_path))
    out = str(tmp_path / "data")
    _interrupt_after(monkeypatch, 2)
    with pytest.raises(Interrupted):
        _convert(folders, out)
    monkeypatch.undo()
    before = folder_bytes(out)
    kwargs = dict(size=(35, 55), resize="none", shard_bytes=SHARD_BYTES)
    if change.pop("extra_file", False):
        Image.fromarray(np.zeros((35, 55), np.uint8)).save(
            os.path.join(folders["synthetic"], "100.png"))
    kwargs.update(change)
    with pytest.raises(resume.ResumeError, match=named) as error:
        images.convert(out, size=kwargs["size"], grayscale=True, resize=kwargs["resize"],
                       synthetic_dir=folders["synthetic"], real_dir=folders["real"],
                       real_test_fraction=0.25,
                       options=_options(resume=True, shard_bytes=kwargs["shard_bytes"]))
    assert ".partial-synthetic" in str(error.value) and "without --resume" in str(error.value)
    assert folder_bytes(out) == before  # Nothing touched.


def test_without_resume_a_partial_folder_is_discarded(reference, tmp_path, monkeypatch):
    folders, ref_out, _ = reference
    out = str(tmp_path / "data")
    _interrupted_conversion(folders, out, monkeypatch, 3)
    assert os.listdir(out) == [".partial-synthetic"]  # Interrupted in the first split.
    reads = _count_reads(monkeypatch)
    summary = _convert(folders, out)
    assert summary.splits["synthetic"].reused_shards == 0
    assert len(reads) == 20 + 16  # Every file decoded again (bad ones tried).
    assert folder_bytes(out) == folder_bytes(ref_out)


def test_check_reports_a_partial_folder(reference, tmp_path, monkeypatch):
    folders, _, _ = reference
    out = str(tmp_path / "data")
    _interrupt_after(monkeypatch, 8)  # synthetic/ published, real/ partial.
    with pytest.raises(Interrupted):
        _convert(folders, out)
    report = check.check(out)
    assert report.ok
    assert any(".partial-real" in w and "--resume" in w for w in report.warnings)


def test_rerun_without_fraction_removes_stale_real_test(reference, tmp_path):
    folders, _, _ = reference
    out = str(tmp_path / "data")
    _convert(folders, out)
    assert "real_test" in schema.read_dataset_info(out).splits
    images.convert(out, size=(35, 55), grayscale=True, resize="none",
                   real_dir=folders["real"], options=_options())
    info = schema.read_dataset_info(out)
    assert sorted(info.splits) == ["real", "synthetic"]
    assert info.splits["real"].count == 15  # All 16 files but the unreadable one.
    assert not os.path.exists(os.path.join(out, "real_test"))
    # A real_test/ from its own folder is not held out of real/: it stays.
    images.convert(out, size=(35, 55), grayscale=True, resize="none",
                   real_test_dir=folders["real"], options=_options())
    images.convert(out, size=(35, 55), grayscale=True, resize="none",
                   real_dir=folders["real"], options=_options())
    assert "real_test" in schema.read_dataset_info(out).splits


def _simulate(out, **options):
    return eye_simulator.convert(out, num_synthetic=150, num_real=120, num_real_test=40,
                                 seed=3, options=_options(shard_bytes=60_000, **options))


def test_eye_simulator_resume_from_the_command_line(tmp_path, monkeypatch):
    reference_out = str(tmp_path / "reference")
    reference_summary = _simulate(reference_out)
    assert reference_summary.splits["real"].shards >= 3
    out = str(tmp_path / "data")
    n_synthetic = reference_summary.splits["synthetic"].shards
    _interrupt_after(monkeypatch, n_synthetic + 1)  # In real/, after 1 shard.
    with pytest.raises(Interrupted):
        _simulate(out)
    monkeypatch.undo()
    result = run_module("data_prep.eye_simulator", f"--output_dir={out}",
                        "--num_synthetic=150", "--num_real=120", "--num_real_test=40",
                        "--seed=3", "--shard_bytes=60000", "--workers=1", "--resume")
    assert result.returncode == 0, result.stderr
    assert "Split 'synthetic': kept as published" in result.stderr
    assert "Split 'real': 1 shards" in result.stderr
    assert "(1 shards reused)" in result.stdout
    assert folder_bytes(out) == folder_bytes(reference_out)
    # The same records as the training cache's simulator data.
    from simgan_tf.data import builtin

    cache = str(tmp_path / "cache")
    builtin.write_simulator_split(cache, "real", "real", 120, builtin.split_seeds(3)["real"])
    from simgan_tf.data import reader

    ours = reader.load_arrays(out, "real", ("image", "key", schema.LABEL_GAZE))
    theirs = reader.load_arrays(cache, "real", ("image", "key", schema.LABEL_GAZE))
    for name in ours:
        np.testing.assert_array_equal(ours[name], theirs[name])


def test_kaggle_gaze_resume_reads_only_the_remaining_samples(tmp_path, monkeypatch):
    """A converter whose items are read lazily from an HDF5 file when indexed."""
    import h5py

    from data_prep import kaggle_gaze

    rng = np.random.default_rng(1)
    paths = {}
    for domain, count in (("synthetic", 14), ("real", 12)):
        paths[domain] = str(tmp_path / f"{domain}.h5")
        with h5py.File(paths[domain], "w") as f:
            for i in range(count):
                f.create_dataset(f"image/img{i}",
                                 data=rng.integers(0, 256, (35, 55), dtype=np.uint8))
                if domain == "synthetic":
                    f.create_dataset(f"look_vec/img{i}", data=[0.1, 0.2, -1.0])

    def convert(out, **options):
        return kaggle_gaze.convert(out, synthetic_h5=paths["synthetic"],
                                   real_h5=paths["real"], real_test_fraction=0.3,
                                   options=_options(**options))

    reference_out = str(tmp_path / "reference")
    convert(reference_out)
    out = str(tmp_path / "data")
    _interrupt_after(monkeypatch, 2)
    with pytest.raises(Interrupted):
        convert(out)
    monkeypatch.undo()
    indexed = []
    original = kaggle_gaze._Items.__getitem__

    def getitem(self, index):
        indexed.append(index)
        return original(self, index)

    monkeypatch.setattr(kaggle_gaze._Items, "__getitem__", getitem)
    summary = convert(out, resume=True)
    assert summary.splits["synthetic"].reused_shards == 2
    assert indexed[:3] == [6, 7, 8]  # 2 shards of 3 samples were not read again.
    assert folder_bytes(out) == folder_bytes(reference_out)


def test_mpiigaze_rerun_without_test_participants_removes_real_test(tmp_path):
    from test_data_prep_mpiigaze import _make_root

    from data_prep import mpiigaze

    root = str(tmp_path / "MPIIGaze")
    _make_root(root)
    out = str(tmp_path / "data")
    mpiigaze.convert(root, out, test_participants="p12", options=_options())
    assert sorted(schema.read_dataset_info(out).splits) == ["real", "real_test"]
    mpiigaze.convert(root, out, test_participants="", options=_options())
    info = schema.read_dataset_info(out)
    assert sorted(info.splits) == ["real"]  # p12 is in real/ now: no real_test/ on it.
    assert info.splits["real"].count == 12
    assert not os.path.exists(os.path.join(out, "real_test"))
    assert check.check(out).ok
