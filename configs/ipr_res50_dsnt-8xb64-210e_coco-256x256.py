# DSNT row: the coordinate loss plus a Jensen-Shannon regulariser against a Gaussian (sigma 1 cell) at the
# exact label, generated on the device, its weight annealed to 0 over training (mmpose's DSNT row keeps its JS
# weight at 1 throughout, against a sigma-2 target).
_base_ = ['./ipr_res50_8xb64-210e_coco-256x256.py']

model = dict(
    head=dict(
        loss=dict(
            _delete_=True,
            type='IntegralJointLoss',
            coord_loss='l1',
            regularizer='js',
            reg_weight=1.0,
            sigma=1.0,
            anneal=dict(mode='cosine', by='epoch'))))
