"""Is SimGAN's discriminator under-trained or under-powered? Patch accuracy of critics.

    python -m experiments.patch_critic --model_dir=runs/table2/simgan-2 [--eval_at=25,50,500,2000]

Loads a finished `train.py` run (its config and newest checkpoint), refines held-out
synthetic images with its refiner, frozen, and reports the per-patch accuracy on held-out
refined and real images of three critics with the run's discriminator architecture:

  * `run`: the run's own discriminator as the checkpoint holds it;
  * `run, trained on`: that discriminator trained further, refiner frozen;
  * `fresh`: a newly initialized one trained from scratch, refiner frozen.

Both trained critics see what SimGAN's discriminator sees (the first half of the images:
refined by the frozen refiner vs real, the per-patch cross-entropy of `losses.py`, the
run's discriminator optimizer and batch size) and are measured on the second half after each
number of steps in `--eval_at` (how fast a critic catches up matters as much as where it
ends). Also reported: the fresh critic on raw synthetic images, the gap
the refiner started from.

Reading: if the trained critics separate patches well above the run's own figure, the
run's discriminator lagged behind its refiner (under-trained: more discriminator updates
or a higher discriminator learning rate should help); if they stay near 50%, the patch
critic cannot see what whole-image classifiers see (under-powered).
"""

import os
import time

from absl import app, flags

from experiments import common

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "A finished training run.", required=True)
flags.DEFINE_integer("images", 8000, "Images per set; the first half trains, the second tests.")
flags.DEFINE_list("eval_at", ["25", "50", "100", "250", "500", "1000", "2000"],
                  "Training steps of each trained critic after which it is measured on the "
                  "held-out images; the last is where training stops.")
flags.DEFINE_integer("seed", 0, "Initialization and batch order of the critics.")


def main(argv):
    del argv
    import keras
    import numpy as np
    import tensorflow as tf

    from simgan_tf.data import reader
    from simgan_tf.modeling import losses
    from simgan_tf.training import train_lib
    from simgan_tf.modeling.discriminator import build_discriminator

    config = common.load_run_config(FLAGS.model_dir)
    model = train_lib.build_simgan(config)
    prefix = tf.train.latest_checkpoint(os.path.join(FLAGS.model_dir, "checkpoints"))
    if prefix is None:
        raise SystemExit(f"No checkpoint in {FLAGS.model_dir}/checkpoints.")
    # Every network, optimizer and buffer variable must come from the checkpoint.
    train_lib.make_checkpoint(model).restore(prefix).assert_existing_objects_matched()
    data_dir = train_lib.resolve_data_dir(config)
    n = FLAGS.images
    synthetic = reader.load_arrays(data_dir, config.data.synthetic_split, count=n)["image"]
    real = reader.load_arrays(data_dir, config.data.real_split, count=n)["image"]
    refined = model.refiner.predict(synthetic, batch_size=500, verbose=0)
    half = n // 2
    print(f"run {FLAGS.model_dir}, checkpoint {os.path.basename(prefix)}, "
          f"{half} training / {n - half} held-out images per set")

    def accuracy(critic, candidate, target_real):  # eager: one call per 500 images
        logits = critic(candidate, training=False)
        return tf.reduce_mean(losses.patch_accuracy(
            logits, losses.REAL if target_real else losses.REFINED))

    def held_out(critic, fake):
        a_fake = float(np.mean([accuracy(critic, fake[i:i + 500], False).numpy()
                                for i in range(half, n, 500)]))
        a_real = float(np.mean([accuracy(critic, real[i:i + 500], True).numpy()
                                for i in range(half, n, 500)]))
        return a_fake, a_real

    def report(name, step, a_fake, a_real):
        print(f"{name:<28} step {step:>5}: patches right on fake {a_fake * 100:5.1f}%, "
              f"on real {a_real * 100:5.1f}%, mean {(a_fake + a_real) * 50:5.1f}%", flush=True)

    report("run", 0, *held_out(model.discriminator, refined))

    def train_critic(name, critic, fake):
        optimizer = train_lib.make_optimizer(config.discriminator_optimizer)
        b = config.train.batch_size
        rng = np.random.default_rng(FLAGS.seed)

        @tf.function
        def step(fake_batch, real_batch):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(losses.discriminator_loss(
                    critic(fake_batch, training=True), critic(real_batch, training=True)))
            grads = tape.gradient(loss, critic.trainable_variables)
            optimizer.apply_gradients(zip(grads, critic.trainable_variables))

        eval_at = sorted(int(s) for s in FLAGS.eval_at)
        start = time.perf_counter()
        for i in range(1, eval_at[-1] + 1):
            step(fake[rng.integers(0, half, b)], real[rng.integers(0, half, b)])
            if i in eval_at:
                report(name, i, *held_out(critic, fake))
        print(f"  ({time.perf_counter() - start:.0f} s)")

    train_critic("run, trained on", model.discriminator, refined)
    shape = config.image_shape
    keras.utils.set_random_seed(FLAGS.seed)
    train_critic("fresh, refined", build_discriminator(shape, config.discriminator), refined)
    keras.utils.set_random_seed(FLAGS.seed)
    train_critic("fresh, raw synthetic", build_discriminator(shape, config.discriminator),
                 synthetic)


if __name__ == "__main__":
    app.run(main)
