"""The hand-made transforms `experiments.realism_cues` scores."""

from absl import app
import numpy as np
import pytest

from experiments import realism_cues


def flat_images(value=0.0, n=4, h=24, w=32):
    return np.full((n, h, w, 1), value, np.float32)


def test_none_only_quantizes_to_8_bits():
    images = np.linspace(-1, 1, 4 * 6 * 8, dtype=np.float32).reshape(4, 6, 8, 1)
    out = realism_cues.transform(images, "none", images, np.random.default_rng(0))
    np.testing.assert_allclose(out, np.round((images + 1) * 127.5) / 127.5 - 1, atol=1e-6)


def test_texture_multiplies_the_intensity_by_smooth_noise_of_the_given_strength():
    images = flat_images(0.0)  # intensity 0.5 in [0, 1]
    out = realism_cues.transform(images, "texture0.1@3", images, np.random.default_rng(0))
    # (x + 1) * (1 + 0.1 n) - 1 with x = 0 and unit-std n: standard deviation 0.1.
    assert out.std(axis=(1, 2, 3)) == pytest.approx([0.1] * 4, abs=0.01)
    assert abs(out.mean()) < 0.03
    # Smooth over about 3 pixels: neighbours are far more alike than in white noise.
    white = realism_cues.transform(images, "noise0.1", images, np.random.default_rng(0))
    assert np.abs(np.diff(out, axis=2)).mean() < 0.3 * np.abs(np.diff(white, axis=2)).mean()


def test_texture_is_multiplicative_so_black_stays_black():
    images = flat_images(-1.0)
    out = realism_cues.transform(images, "texture0.2@1.5", images, np.random.default_rng(0))
    np.testing.assert_array_equal(out, -1.0)


def test_a_texture_step_without_a_cell_size_is_a_usage_error():
    images = flat_images()
    with pytest.raises(app.UsageError, match="textureS@C"):
        realism_cues.transform(images, "blur1.0+texture0.1", images, np.random.default_rng(0))


def test_an_unknown_step_is_named_in_the_error():
    images = flat_images()
    with pytest.raises(app.UsageError, match="'sharpen'"):
        realism_cues.transform(images, "sharpen", images, np.random.default_rng(0))


def test_a_split_of_a_data_folder_is_scored_against_its_real_test(tmp_path, capsys):
    """`--data_dir --split=refined`: the refined eyes transformed, scored against the
    folder's real_test; identical sets score about 50%, noisy ones far above."""
    from conftest import write_split

    rng = np.random.default_rng(0)
    real = rng.integers(60, 200, (64, 12, 16, 1)).astype(np.uint8)
    write_split(str(tmp_path), "real_test", real, "real")
    write_split(str(tmp_path), "refined", real.copy(), "synthetic")
    realism_cues.score_transforms(str(tmp_path), "refined", ["none", "noise0.5"], 64, 0)
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| refined")]
    assert [row.split(" | ")[0] for row in rows] == ["| refined, none", "| refined, noise0.5"]
    accuracy = [float(row.split(" | ")[4].rstrip("%")) for row in rows]
    assert accuracy[0] <= 75.0 and accuracy[1] >= 90.0


def test_split_without_data_dir_is_a_usage_error():
    with pytest.raises(app.UsageError, match="--data_dir"):
        realism_cues.score_transforms(None, "refined", ["none"], 64, 0)


def test_crop_cuts_every_side_and_refuses_to_cut_everything():
    images = np.arange(2 * 6 * 8, dtype=np.float32).reshape(2, 6, 8, 1)
    np.testing.assert_array_equal(realism_cues.crop(images, 2), images[:, 2:4, 2:6])
    np.testing.assert_array_equal(realism_cues.crop(images, 0), images)
    with pytest.raises(app.UsageError, match="--crop=3"):
        realism_cues.crop(images, 3)


def test_cropped_sets_are_scored_without_their_edges(tmp_path, capsys):
    """Refined images equal to real except a dark one-pixel frame: told apart whole,
    not once the frame is cropped away."""
    from conftest import write_split

    rng = np.random.default_rng(1)
    real = rng.integers(60, 200, (64, 12, 16, 1)).astype(np.uint8)
    framed = real.copy()
    framed[:, 0], framed[:, -1], framed[:, :, 0], framed[:, :, -1] = 0, 0, 0, 0
    write_split(str(tmp_path), "real_test", real, "real")
    write_split(str(tmp_path), "refined", framed, "synthetic")
    accuracy = []
    for pixels in (0, 1):
        realism_cues.score_transforms(str(tmp_path), "refined", ["none"], 64, 0, pixels)
        row = [line for line in capsys.readouterr().out.splitlines()
               if line.startswith("| refined")][0]
        accuracy.append(float(row.split(" | ")[4].rstrip("%")))
    assert accuracy[0] >= 90.0 and accuracy[1] <= 75.0


def test_spectrum_reports_real_power_and_the_ratio_of_each_set(tmp_path, capsys):
    """With band edges: real_test's power per band, and each set's ratio to it: about 1
    for a copy of the real images, far above 1 at high frequencies with white noise."""
    from conftest import write_split

    rng = np.random.default_rng(2)
    real = rng.integers(60, 200, (64, 12, 16, 1)).astype(np.uint8)
    write_split(str(tmp_path), "real_test", real, "real")
    write_split(str(tmp_path), "refined", real.copy(), "synthetic")
    realism_cues.score_transforms(str(tmp_path), "refined", ["none", "noise0.5"], 64, 0,
                                  spectrum_edges=["0", "0.25", "0.71"])
    out = capsys.readouterr().out.splitlines()
    header = [line for line in out if line.startswith("| images")][0]
    assert "| power 0-0.25 | power 0.25-0.71 |" in header
    real_row = [line for line in out if line.startswith("| real_test")][0].split(" | ")
    images = real.astype(np.float32) / 127.5 - 1
    expected = realism_cues.spectrum(images, [0, 0.25, 0.71])
    np.testing.assert_allclose([float(real_row[4]), float(real_row[5])], expected, rtol=0.01)
    rows = {line.split(" | ")[0]: line.split(" | ") for line in out
            if line.startswith("| refined")}
    assert [float(r) for r in rows["| refined, none"][4:6]] == [1.0, 1.0]
    assert float(rows["| refined, noise0.5"][5]) > 2.0
    assert float(rows["| refined, noise0.5"][6].rstrip("%")) >= 90.0


def test_spectrum_with_an_empty_band_is_a_usage_error(tmp_path):
    from conftest import write_split

    real = np.full((8, 12, 16, 1), 100, np.uint8)
    write_split(str(tmp_path), "real_test", real, "real")
    write_split(str(tmp_path), "refined", real, "synthetic")
    with pytest.raises(app.UsageError, match="--spectrum: .*no frequency"):
        realism_cues.score_transforms(str(tmp_path), "refined", ["none"], 8, 0,
                                      spectrum_edges=["0.01", "0.02", "0.71"])


def test_spectrum_edges_that_are_not_numbers_are_named_in_the_error():
    with pytest.raises(app.UsageError, match="--spectrum must be numbers.*0.1,low"):
        realism_cues.score_transforms(None, "synthetic", ["none"], 8, 0,
                                      spectrum_edges=["0.1", "low"])


def smooth_and_noisy_sets(n=32, h=16, w=24):
    """A real set of smooth random images and a candidate set of white-noise images:
    their power spectra differ by orders of magnitude at high frequencies."""
    from scipy import ndimage

    rng = np.random.default_rng(3)
    real = ndimage.gaussian_filter(rng.standard_normal((n, h, w, 1)), (0, 2, 2, 0))
    real = (0.3 * real / real.std()).astype(np.float32)
    candidate = (0.2 * rng.standard_normal((n, h, w, 1)) + 0.1).astype(np.float32)
    return real, candidate


def test_match_spectrum_gives_the_real_power_in_each_band_and_keeps_the_rest():
    real, candidate = smooth_and_noisy_sets()
    edges = [0.05, 0.2, 0.45]
    out = realism_cues.match_spectrum(candidate, real, edges)
    before = realism_cues.spectrum(candidate, edges) / realism_cues.spectrum(real, edges)
    after = realism_cues.spectrum(out, edges) / realism_cues.spectrum(real, edges)
    assert before[1] > 2  # white noise: too much power at 0.2-0.45
    np.testing.assert_allclose(after, [1.0, 1.0], rtol=1e-4)
    # Each image's mean and the power outside the bands (above 0.45) are untouched.
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), candidate.mean(axis=(1, 2, 3)),
                               atol=1e-6)
    outside = [0.45, 0.71]
    np.testing.assert_allclose(realism_cues.spectrum(out, outside),
                               realism_cues.spectrum(candidate, outside), rtol=1e-4)
    # A fixed filter: the same gain for every image, so it commutes with adding images.
    twice = realism_cues.match_spectrum(np.concatenate([candidate, candidate]), real, edges)
    np.testing.assert_allclose(twice[:len(candidate)], out, atol=1e-5)


def test_the_spectrum_step_quantizes_and_needs_the_bands():
    real, candidate = smooth_and_noisy_sets()
    out = realism_cues.transform(candidate, "spectrum", real, np.random.default_rng(0),
                                 [0.05, 0.2, 0.45])
    np.testing.assert_allclose(out, np.round((out + 1) * 127.5) / 127.5 - 1, atol=1e-6)
    ratio = realism_cues.spectrum(out, [0.2, 0.45]) / realism_cues.spectrum(real, [0.2, 0.45])
    assert ratio == pytest.approx([1.0], rel=0.1)  # 8-bit rounding adds a little power
    with pytest.raises(app.UsageError, match="spectrum step needs the bands of --spectrum"):
        realism_cues.transform(candidate, "spectrum", real, np.random.default_rng(0), [])
    flat = np.zeros_like(candidate)  # no power in any band: no gain can match it
    with pytest.raises(app.UsageError, match="band\\(s\\) 0.05-0.2, 0.2-0.45 .*no power"):
        realism_cues.transform(flat, "spectrum", real, np.random.default_rng(0),
                               [0.05, 0.2, 0.45])


def test_the_meanimage_step_gives_the_real_mean_image():
    real, candidate = smooth_and_noisy_sets()
    real[:, :4] += 0.3  # a bright band at the top of every real image
    out = realism_cues.transform(candidate, "meanimage", real, np.random.default_rng(0))
    assert np.abs(candidate.mean(axis=0) - real.mean(axis=0)).max() > 0.25
    # Equal up to the 8-bit rounding of each image (at most half a level per pixel).
    np.testing.assert_allclose(out.mean(axis=0), real.mean(axis=0), atol=0.5 / 127.5 + 1e-6)
    # Per-image deviations from the set's mean image are kept (up to that rounding).
    np.testing.assert_allclose(out - out.mean(axis=0), candidate - candidate.mean(axis=0),
                               atol=1 / 127.5 + 1e-6)


def test_repeats_score_each_set_by_the_mean_of_classifiers_of_seeds_0_to_n(
        tmp_path, capsys, monkeypatch):
    """`repeats` reaches the realism score as `RealismConfig.repeats` (whose mean over
    seeds is tested with `realism_score` itself), and the table prints that mean."""
    from conftest import write_split
    from simgan_tf.evaluation import realism

    rng = np.random.default_rng(4)
    real = rng.integers(60, 200, (16, 12, 16, 1)).astype(np.uint8)
    write_split(str(tmp_path), "real_test", real, "real")
    write_split(str(tmp_path), "refined", real.copy(), "synthetic")
    configs = []

    def fake_score(real_images, candidate, config=realism.RealismConfig(), **kwargs):
        configs.append(config)
        return {"accuracy": 0.7346, "cross_entropy": 0.5123}

    monkeypatch.setattr(realism, "realism_score", fake_score)
    realism_cues.score_transforms(str(tmp_path), "refined", ["none", "noise0.1"], 16, 0,
                                  repeats=3)
    out = capsys.readouterr().out
    assert "(realism: the mean of 3 classifiers, seeds 0 to 2)" in out
    assert [(c.repeats, c.seed) for c in configs] == [(3, 0), (3, 0)]
    rows = [line for line in out.splitlines() if line.startswith("| refined")]
    assert all(row.endswith("| 73.5% | 0.512 |") for row in rows) and len(rows) == 2
    realism_cues.score_transforms(str(tmp_path), "refined", ["none"], 16, 0)
    assert configs[-1].repeats == 1
    assert "classifiers, seeds" not in capsys.readouterr().out
    with pytest.raises(app.UsageError, match="--repeats must be >= 1"):
        realism_cues.score_transforms(str(tmp_path), "refined", ["none"], 16, 0, repeats=0)
