from cases import OptCase

CASE = OptCase(
    name="ftrl",
    configs={
        "default": {},
        "wd": {"wd": 0.07},
        "clip+rescale": {"clip_gradient": 0.4, "rescale_grad": 0.7, "wd": 0.03},
        "lamda1+beta": {"lamda1": 0.3, "beta": 0.5, "learning_rate": 0.5},
        "no-l1": {"lamda1": 0.0},
    },
    errors=[
        ({"lamda1": -0.1}, ValueError, "lamda1"),
        ({"beta": 0.0}, ValueError, "beta"),
        ({"beta": -1.0}, ValueError, "beta"),
        ({"learning_rate": -0.1}, ValueError, "learning_rate"),
    ],
)
