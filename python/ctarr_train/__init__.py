"""ctarr_train: trains, evaluates and exports the 19-class 3D U-Net that `ctarr segment` / `ctarr crop` run.

Modules, in the order data flows through them:
  classes      the 19 classes, HU windows and spacing (share/classes.json, shared with the C++) and label mappings
  geometry     canonical (LPS) orientation and area-weighted resampling onto the 3 mm grid
  tissues      tissue groups and their HU per contrast phase (for rendering label maps as CT)
  sources      training volumes: real CTs, ICRP 110 phantoms and TotalSegmentator label maps (rendered)
  augment      geometric and intensity augmentation settings
  sampler      draws augmented 64^3 patches from the sources
  unet         the network (BatchNorm U-Net), BatchNorm folding, safetensors IO
  loss         the marginal (partial-label) cross-entropy + Dice loss
  evaluate     whole-volume inference and per-class Dice on validation CTs
  checkpoint   resumable training state (committable: bf16 weights and optimiser moments, sampler position, log)
  export       the model card and weights that the C++ reads
  train        the training loop (`/usr/bin/python3 -m ctarr_train`)
Run from the repository root with PYTHONPATH=python (see docs/TRAINING.md).
"""
