"""Reference photos for enrolment tests, made from scikit-image's astronaut (a real face that ships with a
registry package): one good face, the same face in another file, and one photo for each way to be refused."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter


@dataclass(frozen=True)
class Photos:
    face: Path  # one sharp, frontal face, 43 px between the eyes
    face_again: Path  # the same face re-encoded: another file, the same person
    two_faces: Path
    small: Path  # 22 px between the eyes
    blurred: Path  # sharpness about 2
    no_face: Path
    truncated: Path
    not_an_image: Path


def make_photos(folder: Path, astronaut: np.ndarray) -> Photos:
    folder.mkdir(parents=True, exist_ok=True)
    # The full astronaut picture also shows a badge HOG takes for a face; the head and shoulders show one.
    head = np.ascontiguousarray(astronaut[0:300, 80:380])
    picture = Image.fromarray(head)

    def save(name: str, image: Image.Image, **options: object) -> Path:
        path = folder / name
        image.save(path, **options)
        return path

    face = save("face.png", picture)
    face_again = save("face_again.jpg", picture, quality=60)
    two = save("two_faces.png", Image.fromarray(np.ascontiguousarray(np.concatenate([head, head[:, ::-1]], axis=1))))
    small = save("small.png", picture.resize((150, 150), Image.Resampling.LANCZOS))
    blurred = save("blurred.png", picture.filter(ImageFilter.GaussianBlur(3)))
    from skimage import data

    no_face = save("coffee.png", Image.fromarray(data.coffee()))
    whole = io.BytesIO()
    picture.save(whole, format="JPEG", quality=90)
    truncated = folder / "truncated.jpg"
    truncated.write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    not_an_image = folder / "notes.jpg"
    not_an_image.write_text("not a photo\n")
    return Photos(face, face_again, two, small, blurred, no_face, truncated, not_an_image)
