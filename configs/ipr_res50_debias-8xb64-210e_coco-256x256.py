# Debias row (Gu et al., ICCV 2021): the joint loss, softmax with beta 10 and the soft-argmax's centre bias
# removed exactly (computed in log space, finite for any logits).
_base_ = ['./ipr_res50_dsnt-8xb64-210e_coco-256x256.py']

model = dict(head=dict(beta=10.0, debias=True))
