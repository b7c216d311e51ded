from cases import OptCase

CASE = OptCase(
    name="nadam",
    configs={
        "default": {},
        "betas": {"beta1": 0.5, "beta2": 0.8, "learning_rate": 0.01, "schedule_decay": 0.008},
        "wd+clip": {"wd": 0.05, "clip_gradient": 0.4},
        "rescale+wd": {"rescale_grad": 0.14, "wd": 0.03, "epsilon": 1e-6},
        "begin": {"begin_num_update": 5},
    },
    errors=[
        ({"beta1": 1.0}, ValueError, "beta1"),
        ({"beta2": 1.0}, ValueError, "beta2"),
        ({"epsilon": 0.0}, ValueError, "epsilon"),
        ({"schedule_decay": -0.1}, ValueError, "schedule_decay"),
        ({"learning_rate": -1.0}, ValueError, "learning_rate"),
    ],
)
