"""A visual Turing test (paper, Sec. 3.1 and Table 1): can a person tell real images apart?

A session shows a person one image at a time, in random order: `num_images` real images
and as many of another kind (refined by a SimGAN refiner, or plain synthetic). For each
the person answers "real" or "synthetic". The session reports the confusion matrix
(ground truth x answer), the accuracy, and the two-sided exact binomial p-value of the
number of correct answers against chance (0.5): a refiner that fools people leaves the
accuracy near 0.5 with a large p-value (the paper: 517 of 1000 answers right for real vs
refined eyes, while real vs synthetic was told apart well above chance).

The page is served by the standard library (`http.server`) on a local port, needs no
JavaScript, and saves the answers as JSON after every click:

  GET  /             the current image with two buttons, or the results when done
  GET  /image/<i>    trial i's image (PNG)
  POST /answer       form fields `trial` (index) and `answer` (`real` or `synthetic`)
  GET  /results.json the saved JSON

`turing_test.py` (repository root) parses flags and calls `load_images`, `Session` and
`serve`.
"""

from __future__ import annotations

import dataclasses
import datetime
import html
import json
import math
import threading
import time
import urllib.parse
from http import server as http_server

import numpy as np

from simgan_tf.data import schema

REAL = "real"
ANSWERS = ("real", "synthetic")  # what the person can answer


def binomial_p_value(successes: int, trials: int) -> float:
    """Two-sided exact binomial test of `successes` out of `trials` against p = 0.5.

    The p-value is the probability, under chance, of an outcome at most as likely as the
    observed one; at p = 0.5 the distribution is symmetric, so it is
    `min(1, 2 * P(X <= min(k, n - k)))` for X ~ Binomial(n, 1/2), computed exactly with
    integers (as `scipy.stats.binomtest(k, n).pvalue`).

    Raises:
      ValueError: unless 0 <= successes <= trials.
    """
    if not 0 <= successes <= trials:
        raise ValueError(
            f"Expected 0 <= successes <= trials. Received: successes={successes}, "
            f"trials={trials}")
    if trials == 0:
        return 1.0
    tail = min(successes, trials - successes)
    count = sum(math.comb(trials, i) for i in range(tail + 1))
    return min(1.0, 2 * count / 2 ** trials)


def summarize(truths: list[str], answers: list[str], other_label: str) -> dict:
    """Confusion matrix, accuracy and p-value of a session's answered trials.

    Args:
      truths: ground truth per answered trial, `real` or `other_label`.
      answers: the person's answers, `real` or `synthetic`.
      other_label: name of the non-real class (`refined` or `synthetic`).

    Returns:
      `{"answered", "correct", "accuracy" (None if nothing answered), "p_value",
      "chance": 0.5, "confusion_matrix": {truth: {answer: count}}}`; an answer is
      correct when it says `real` exactly for the real images.
    """
    if len(truths) != len(answers):
        raise ValueError(f"Expected as many truths as answers. Received: {len(truths)} "
                         f"truths, {len(answers)} answers")
    matrix = {truth: {answer: 0 for answer in ANSWERS} for truth in (REAL, other_label)}
    for truth, answer in zip(truths, answers):
        if truth not in matrix or answer not in ANSWERS:
            raise ValueError(f"Expected truth in {sorted(matrix)} and answer in {ANSWERS}. "
                             f"Received: truth={truth!r}, answer={answer!r}")
        matrix[truth][answer] += 1
    correct = matrix[REAL]["real"] + matrix[other_label]["synthetic"]
    answered = len(answers)
    return {
        "answered": answered,
        "correct": correct,
        "accuracy": correct / answered if answered else None,
        "chance": 0.5,
        "p_value": binomial_p_value(correct, answered),
        "confusion_matrix": matrix,
    }


def display_png(image: np.ndarray) -> bytes:
    """An image in [-1, 1] (`[H, W, 1 or 3]`) as an 8-bit PNG, -1 black and +1 white.

    Real and other images go through the same mapping, so the display does not give
    the answer away (16-bit depth is shown with 256 levels over the model's range).
    """
    from simgan_tf.data import reader  # TensorFlow: loaded with the images already

    return schema.encode_png(reader.to_uint(np.asarray(image, np.float32), "uint8").numpy())


def load_images(data_dir: str, split: str, count: int, *, seed: int, refine=None):
    """`count` random images of a split, optionally refined.

    Args:
      data_dir: data folder.
      split: split name.
      count: images wanted.
      seed: which images (a shuffle of the whole split).
      refine: `None`, or a function from `[n, H, W, C]` images in [-1, 1] to refined
        ones (`export.load_refiner(...)`).

    Returns:
      `(images [count, H, W, C] float32 in [-1, 1], keys [count] str)`.

    Raises:
      ValueError: if the split holds fewer than `count` images (names the folder).
    """
    from simgan_tf.data import reader  # TensorFlow, only when images are loaded

    info = schema.read_dataset_info(data_dir)
    available = info.splits[split].count if split in info.splits else 0
    if split in info.splits and available < count:
        raise ValueError(f"Split {split!r} of {data_dir} has {available} images; expected "
                         f"a count of at most {available}. Received: count={count}")
    examples = reader.read_split(data_dir, split, info=info, shuffle=True, seed=seed,
                               shuffle_buffer=available or 1).take(count)
    images, keys = [], []
    for example in examples.as_numpy_iterator():
        images.append(example["image"])
        keys.append(example["key"].decode())
    images = np.stack(images)
    if refine is not None:
        images = np.concatenate([np.asarray(refine(images[i:i + 64]))
                                 for i in range(0, len(images), 64)])
    return images.astype(np.float32), keys


@dataclasses.dataclass
class Trial:
    """One image shown to the person.

    Attributes:
      index: position in the session.
      truth: `real` or the other class's label.
      key: the sample's key in its split (`sample/key`).
      png: the displayed image.
      answer: `real` or `synthetic` once answered.
      seconds: time from showing the image to the answer.
    """
    index: int
    truth: str
    key: str
    png: bytes = dataclasses.field(repr=False)
    answer: str | None = None
    seconds: float | None = None


class Session:
    """A shuffled sequence of trials and the person's answers, saved as JSON.

    Args:
      real_images, other_images: `[n, H, W, C]` in [-1, 1].
      real_keys, other_keys: their sample keys.
      other_label: `refined` or `synthetic`.
      output: path of the JSON file, rewritten after every answer.
      seed: order of the trials.
      metadata: extra fields for the JSON (sources, subject, ...).
    """

    def __init__(self, real_images, real_keys, other_images, other_keys, *,
                 other_label: str, output: str, seed: int = 0, metadata: dict | None = None):
        if other_label == REAL or not other_label:
            raise ValueError(f"Expected another label than 'real'. Received: {other_label!r}")
        if len(real_images) != len(real_keys) or len(other_images) != len(other_keys):
            raise ValueError("Expected one key per image. Received: "
                             f"{len(real_images)} real images, {len(real_keys)} keys; "
                             f"{len(other_images)} other images, {len(other_keys)} keys")
        items = ([(REAL, k, im) for k, im in zip(real_keys, real_images)]
                 + [(other_label, k, im) for k, im in zip(other_keys, other_images)])
        order = np.random.default_rng(seed).permutation(len(items))
        self.trials = [Trial(index=i, truth=items[j][0], key=items[j][1],
                             png=display_png(items[j][2])) for i, j in enumerate(order)]
        shapes = {tuple(np.shape(im)) for _, _, im in items}
        if len(shapes) > 1:
            raise ValueError(f"Expected images of one shape. Received shapes {sorted(shapes)}")
        self.image_shape = shapes.pop() if shapes else None
        self.other_label = other_label
        self.output = output
        self.seed = seed
        self.metadata = dict(metadata or {})
        self.started = _now()
        self.finished = None
        self._shown_at = time.monotonic()
        self._lock = threading.Lock()
        self.save()

    @property
    def current(self) -> Trial | None:
        """The first unanswered trial, `None` when all are answered."""
        return next((t for t in self.trials if t.answer is None), None)

    @property
    def done(self) -> bool:
        return self.current is None

    def answer(self, index: int, answer: str) -> bool:
        """Records the answer to trial `index` if it is the current one.

        Returns:
          Whether it was recorded (a repeated or stale form submission is ignored).

        Raises:
          ValueError: if `answer` is not `real` or `synthetic`.
        """
        if answer not in ANSWERS:
            raise ValueError(f"Expected an answer in {ANSWERS}. Received: {answer!r}")
        with self._lock:
            current = self.current
            if current is None or current.index != index:
                return False
            now = time.monotonic()
            current.answer, current.seconds = answer, round(now - self._shown_at, 3)
            self._shown_at = now
            if self.done:
                self.finished = _now()
            self.save()
            return True

    def results(self) -> dict:
        answered = [t for t in self.trials if t.answer is not None]
        return summarize([t.truth for t in answered], [t.answer for t in answered],
                         self.other_label)

    def to_json(self) -> dict:
        return {
            "condition": f"real vs {self.other_label}",
            "classes": [REAL, self.other_label],
            "answers": list(ANSWERS),
            **self.metadata,
            "seed": self.seed,
            "image_shape": list(self.image_shape) if self.image_shape else None,
            "started": self.started,
            "finished": self.finished,
            "total": len(self.trials),
            "results": self.results(),
            "trials": [{"index": t.index, "truth": t.truth, "key": t.key,
                        "answer": t.answer, "seconds": t.seconds} for t in self.trials],
        }

    def save(self) -> None:
        schema.write_json_atomic(self.output, self.to_json())


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


_STYLE = """
body { font-family: sans-serif; max-width: 40em; margin: 2em auto; text-align: center; }
img { image-rendering: pixelated; border: 1px solid #888; }
button { font-size: 1.3em; margin: 1em; padding: 0.4em 1.5em; }
table { margin: 1em auto; border-collapse: collapse; }
td, th { border: 1px solid #888; padding: 0.3em 0.8em; }
"""


def _page(title: str, body: str) -> bytes:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{_STYLE}</style></head><body>{body}</body></html>").encode()


def trial_page(session: Session, zoom: int) -> bytes:
    """The page of the current trial: image, progress, two answer buttons."""
    trial = session.current
    height, width = session.image_shape[:2]
    return _page("Real or synthetic?", f"""
<h1>Real or synthetic?</h1>
<p id="progress">Image {trial.index + 1} of {len(session.trials)}</p>
<p><img id="image" src="/image/{trial.index}" width="{width * zoom}" height="{height * zoom}"
  alt="image {trial.index + 1}"></p>
<form method="post" action="/answer">
  <input type="hidden" name="trial" value="{trial.index}">
  <button id="answer-real" name="answer" value="real" accesskey="r">Real</button>
  <button id="answer-synthetic" name="answer" value="synthetic" accesskey="s">Synthetic</button>
</form>
<p>Keys: Alt+R real, Alt+S synthetic (Firefox: Alt+Shift).</p>""")


def results_page(session: Session) -> bytes:
    """The results: confusion matrix, accuracy, p-value, where the JSON is."""
    r = session.results()
    accuracy = "-" if r["accuracy"] is None else f"{r['accuracy']:.3f}"
    rows = "".join(
        f"<tr><th>{html.escape(truth)}</th>"
        + "".join(f"<td id='count-{html.escape(truth)}-{a}'>{counts[a]}</td>" for a in ANSWERS)
        + "</tr>" for truth, counts in r["confusion_matrix"].items())
    return _page("Results", f"""
<h1>Done, thank you</h1>
<table><tr><th>ground truth \\ answer</th><th>real</th><th>synthetic</th></tr>{rows}</table>
<p>Accuracy <span id="accuracy">{accuracy}</span> ({r['correct']} of
{r['answered']}); chance 0.5; two-sided binomial p-value
<span id="p-value">{r['p_value']:.4g}</span>.</p>
<p>Saved to <code>{html.escape(session.output)}</code>.</p>""")


class _Handler(http_server.BaseHTTPRequestHandler):
    server_version = "simgan-tf-turing-test"

    def log_message(self, format, *args):  # keep the terminal for the summary
        pass

    def _send(self, status, body, content_type="text/html; charset=utf-8", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        session = self.server.session
        path = urllib.parse.urlparse(self.path).path
        if path == "/":
            if session.done:
                self._send(200, results_page(session))
                if self.server.exit_when_done:
                    threading.Thread(target=self.server.shutdown, daemon=True).start()
            else:
                self._send(200, trial_page(session, self.server.zoom))
        elif path.startswith("/image/"):
            try:
                trial = session.trials[int(path[len("/image/"):])]
            except (ValueError, IndexError):
                self._send(404, _page("Not found", f"No image {html.escape(path)}"))
                return
            self._send(200, trial.png, "image/png")
        elif path == "/results.json":
            self._send(200, json.dumps(session.to_json(), indent=2).encode(),
                       "application/json")
        else:
            self._send(404, _page("Not found", f"No page {html.escape(path)}"))

    def do_POST(self):
        if urllib.parse.urlparse(self.path).path != "/answer":
            self._send(404, _page("Not found", "POST /answer only"))
            return
        length = int(self.headers.get("Content-Length", 0))
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        try:
            self.server.session.answer(int(form["trial"][0]), form["answer"][0])
        except (KeyError, ValueError) as e:
            self._send(400, _page("Bad answer", html.escape(f"Bad form {form}: {e}")))
            return
        self._send(303, b"", headers=[("Location", "/")])


def make_server(session: Session, host: str = "127.0.0.1", port: int = 0, *,
                zoom: int | None = None, exit_when_done: bool = True):
    """A threading HTTP server of the session (not started; call `serve_forever`).

    Args:
      session: the session.
      host, port: where to listen; port 0 picks a free one (`server.server_address`).
      zoom: display magnification (default: about 440 pixels wide).
      exit_when_done: stop serving after the results page has been shown.
    """
    httpd = http_server.ThreadingHTTPServer((host, port), _Handler)
    httpd.daemon_threads = True
    httpd.session = session
    width = session.image_shape[1] if session.image_shape else 440
    httpd.zoom = zoom or max(1, round(440 / width))
    httpd.exit_when_done = exit_when_done
    return httpd

