from cases import OptCase

CASE = OptCase(
    name="adagrad",
    configs={
        "default": {},
        "wd": {"wd": 0.05, "learning_rate": 0.1},
        "clip+rescale": {"clip_gradient": 0.4, "rescale_grad": 0.7, "wd": 0.02},
        "epsilon": {"epsilon": 1e-3, "learning_rate": 0.05},
    },
    errors=[
        ({"eps": 1e-7}, DeprecationWarning, "epsilon"),
        ({"epsilon": 0.0}, ValueError, "epsilon"),
        ({"epsilon": -1e-6}, ValueError, "epsilon"),
        ({"epsilon": "tiny"}, TypeError, "epsilon"),
        ({"learning_rate": -0.01}, ValueError, "learning_rate"),
        ({"beta1": 0.9}, TypeError, "beta1"),
    ],
)
