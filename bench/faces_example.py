"""Draw docs/faces_example.jpg: real faces from scikit-image pasted into a scene, classified per face.

    python bench/faces_example.py
"""

import json
from pathlib import Path

from PIL import Image
from skimage import data

from happysad import faces
from happysad.predict import Predictor

astro = Image.fromarray(data.astronaut())
cam = Image.fromarray(data.camera()).convert("RGB")
scene = Image.fromarray(data.coffee()).resize((960, 640))
scene.paste(astro.crop((135, 35, 315, 215)).resize((200, 200)), (60, 80))
scene.paste(astro.crop((135, 35, 315, 215)).rotate(-20, fillcolor=(255, 255, 255)).resize((120, 120)), (420, 300))
scene.paste(cam.crop((147, 83, 308, 244)).resize((150, 150)), (720, 60))  # a face in profile
r = Predictor("fer-happy-sad").predict([scene])[0]
print(json.dumps(r))
out = Path(__file__).resolve().parents[1] / "docs" / "faces_example.jpg"
faces.annotate(scene, r).save(out, quality=88)
print(f"wrote {out}")
