from cases import OptCase

CASE = OptCase(
    name="rmsprop",
    configs={
        "default": {},
        "wd+clip": {"wd": 0.05, "clip_gradient": 0.4, "learning_rate": 0.01},
        "rescale+rho": {"rescale_grad": 0.7, "rho": 0.5},
        "clip_weights": {"clip_weights": 0.5, "learning_rate": 0.05},
        "centered": {"centered": True},
        "centered+wd+clip_weights": {"centered": True, "wd": 0.03, "momentum": 0.5,
                                     "clip_weights": 0.8, "learning_rate": 0.01},
        "centered-no-momentum": {"centered": True, "momentum": 0.0, "rho": 0.8,
                                 "clip_gradient": 0.5, "rescale_grad": 1.5},
    },
    errors=[
        ({"gamma1": 0.9}, DeprecationWarning, "gamma1"),
        ({"gamma2": 0.9}, DeprecationWarning, "gamma2"),
        ({"rho": 1.01}, ValueError, "rho"),
        ({"momentum": -0.5}, ValueError, "momentum"),
        ({"epsilon": 0.0}, ValueError, "epsilon"),
        ({"clip_weights": "big"}, TypeError, "clip_weights"),
        ({"learning_rate": -0.001}, ValueError, "learning_rate"),
    ],
)
