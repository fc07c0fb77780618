"""Person-keypoint datasets, under ``datasets/body/`` as mmpose's are: mmpose's inferencer picks its default
person detector from the dataset class's module path (``...datasets.body...`` -> RTMDet for people)."""
