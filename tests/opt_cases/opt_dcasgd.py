from cases import OptCase

CASE = OptCase(
    name="dcasgd",
    configs={
        "default": {},
        "momentum": {"momentum": 0.9},
        "wd+clip+lamda": {"momentum": 0.5, "wd": 0.05, "clip_gradient": 0.3, "lamda": 0.5},
        "rescale+lr": {"rescale_grad": 0.25, "learning_rate": 0.5, "wd": 0.01, "lamda": 0.1},
    },
    errors=[
        ({"momentum": -0.1}, ValueError, "momentum"),
        ({"lamda": -0.04}, ValueError, "lamda"),
        ({"lamda": "x"}, TypeError, "lamda"),
        ({"learning_rate": -1.0}, ValueError, "learning_rate"),
    ],
)
