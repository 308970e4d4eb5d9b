"""Haze proxies: inverted BAM images (dark particles on a bright film) under a lower contrast with noise, a smooth
additive gradient, a veil of scattered light and a blur, segmented with the shipped weights and contrast auto,
with and without flatten_background (FLAT=1). Derived images go to /tmp/contrast/haze, never into the repository
(the BAM images are CC BY-NC-ND).

    PYTHONPATH=. python research/contrast_haze.py; FLAT=1 PYTHONPATH=. python research/contrast_haze.py
"""

import os

import numpy as np
import tifffile
import torch
from monai.bundle import ConfigParser
from monai.inferers import SlidingWindowInferer
from scipy import ndimage as ndi

from rformer_monai.data.discovery import discover_pairs
from rformer_monai.networks import load_weights
from rformer_monai.transforms import validation_transforms
from rformer_monai.transforms.contrast import CONTRAST_KEY, CONTRAST_SCORE_KEY
from rformer_monai.trust import trust_statistics, trust_warning

torch.set_num_threads(1)
FLAT = os.environ.get("FLAT") == "1"
B="bundles/residualformer_sem"
p=ConfigParser(); p.read_config(B+"/configs/inference.json"); p["bundle_root"]=B
net=load_weights(p.get_parsed_content("network_def"), B+"/models/model.pt").eval()
inf=SlidingWindowInferer(roi_size=(256,256), sw_batch_size=4, overlap=0.25, mode="gaussian")
pairs=discover_pairs(os.environ.get("BAM_DIR", "../shared/data/bam-tio2-sem"))[::6]
out="/tmp/contrast/haze"; os.makedirs(out, exist_ok=True)
rng=np.random.default_rng(0)
def hazes(img):
    inv = 255.0 - img.astype(np.float64)
    h, w = img.shape
    yy, xx = np.mgrid[0:h, 0:w]
    grad = (xx / w + 0.5 * yy / h) / 1.5
    yield "plain", inv
    # grey film: contrast compressed to a third, lifted, noise
    yield "grey_low_contrast", 100 + inv / 3 + rng.normal(0, 4, inv.shape)
    # haze: smooth additive gradient of half the particle contrast
    yield "gradient", 0.6 * inv + 100 * grad
    # veil: large blurred copy added (scattered light)
    yield "veil", 0.5 * inv + 0.5 * ndi.gaussian_filter(inv, 40)
    # blur
    yield "blur", ndi.gaussian_filter(inv, 2.0)
res={}
for pair in pairs:
    img = tifffile.imread(pair["image"])
    if img.ndim == 3: img = img[..., 0]
    for name, x in hazes(img):
        x = np.clip(np.rint(x), 0, 255).astype(np.uint8)
        x[712:] = img[712:]  # the instrument's data bar unchanged
        f = f"{out}/{name}_{os.path.basename(pair['image'])}"
        tifffile.imwrite(f, x)
        d = validation_transforms(contrast="auto", flatten_background=FLAT)({"image": f, "label": pair["label"]})
        with torch.no_grad(): prob = torch.sigmoid(inf(d["image"][None], net))[0,0].numpy()
        t = d["label"][0].numpy() > 0; m = prob > 0.5
        res.setdefault(name, []).append((2*(m&t).sum(), m.sum()+t.sum()))
        s = trust_statistics(prob, float(d["image"].meta[CONTRAST_SCORE_KEY]))
        print(name, os.path.basename(pair["image"]), d["image"].meta[CONTRAST_KEY], round(float(d["image"].meta[CONTRAST_SCORE_KEY]),3), "dice %.3f" % (2*(m&t).sum()/(m.sum()+t.sum())), {k: round(v,3) for k,v in s.items()}, trust_warning(s)[:50], flush=True)
for k, v in res.items():
    v=np.array(v); print("POOLED", k, "%.4f" % (v[:,0].sum()/v[:,1].sum()))
