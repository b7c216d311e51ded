from cases import OptCase

CASE = OptCase(
    name="nag",
    configs={
        "default": {},
        "no-momentum": {"momentum": 0.0, "wd": 0.02},
        "wd+clip": {"momentum": 0.5, "wd": 0.05, "clip_gradient": 0.3},
        "rescale+lr": {"rescale_grad": 0.25, "learning_rate": 0.5, "wd": 0.01},
    },
    errors=[
        ({"momentum": -0.1}, ValueError, "momentum"),
        ({"momentum": "heavy"}, TypeError, "momentum"),
        ({"learning_rate": -1.0}, ValueError, "learning_rate"),
        ({"nesterov": True}, TypeError, "nesterov"),
    ],
)
