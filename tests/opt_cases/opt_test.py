from cases import OptCase

CASE = OptCase(
    name="test",
    configs={
        "default": {},
        "wd": {"wd": 0.05, "learning_rate": 0.1},
        "rescale+clip-ignored": {"rescale_grad": 0.25, "clip_gradient": 0.3, "wd": 0.01},
    },
    errors=[
        ({"learning_rate": -1.0}, ValueError, "learning_rate"),
        ({"momentum": 0.9}, TypeError, "momentum"),
    ],
)
