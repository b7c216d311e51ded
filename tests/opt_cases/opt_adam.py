from cases import OptCase

CASE = OptCase(
    name="adam",
    configs={
        "default": {},
        "betas": {"beta1": 0.5, "beta2": 0.8, "epsilon": 1e-6, "learning_rate": 0.01},
        "wd+clip": {"wd": 0.05, "clip_gradient": 0.4},
        "rescale+wd": {"rescale_grad": 0.14, "wd": 0.03, "learning_rate": 0.05},
        "begin": {"begin_num_update": 7, "lazy_update": True},
    },
    errors=[
        ({"beta1": 1.0}, ValueError, r"beta1 must be in \[0, 1\)"),
        ({"beta1": -0.1}, ValueError, "beta1"),
        ({"beta2": 1.5}, ValueError, "beta2"),
        ({"beta2": float("nan")}, ValueError, "beta2"),
        ({"epsilon": 0.0}, ValueError, "epsilon must be a finite number > 0"),
        ({"epsilon": -1e-8}, ValueError, "epsilon"),
        ({"learning_rate": -1.0}, ValueError, "learning_rate"),
        ({"beta1": "high"}, TypeError, "beta1"),
        ({"momentum": 0.9}, TypeError, "momentum"),
    ],
)
