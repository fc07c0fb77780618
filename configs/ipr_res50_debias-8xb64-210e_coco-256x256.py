# Debias row (Gu et al., ICCV 2021): the joint loss, softmax with beta 10 and the soft-argmax's centre bias
# removed exactly (computed in log space, finite for any logits).
# The correction is exact while a keypoint's peak holds most of its map's mass, as after the base config's
# heatmap-trained start. Trained from scratch on synthetic data, over half of the labelled keypoints stayed below
# 10 % (the `debias_capped` share in the training log), where the correction multiplies offsets tenfold: it cost
# AP at beta 1 and 10 alike, with the background level assumed (0) or measured (`debias_background='median'`).
# Capping the share at 0.5 (`debias_max_background=0.5`) let the maps sharpen and gave most of it back; beta 10
# without the correction scored best (BENCHMARKS.md, accuracy study findings 7 and 8): from scratch, set debias=False.
# Fine-tuning a trained beta-10 model, with and without the correction, scored the same within seed noise (finding 9):
# there the correction is exact and harmless, and a start trained without it leaves its logits at a level the
# correction reads as flat maps for a few dozen iterations (`debias_capped` shows it).
# This config starts from mmpose's released heatmap-trained SimpleBaseline. On the study's synthetic stand-in for
# such a start (a heatmap model it trains first, finding 10) the background sits near 0, the correction is exact
# for all but about 1 % of the keypoints from the first step, and this row scored best of the integral rows.
_base_ = ['./ipr_res50_dsnt-8xb64-210e_coco-256x256.py']

model = dict(head=dict(beta=10.0, debias=True))
