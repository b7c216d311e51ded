from cases import OptCase

CASE = OptCase(
    name="lars",
    configs={
        "default": {},
        "momentum": {"momentum": 0.9},
        "wd+clip": {"momentum": 0.9, "wd": 0.05, "clip_gradient": 0.3, "eta": 0.01},
        "rescale": {"rescale_grad": 0.25, "learning_rate": 0.5, "wd": 0.01, "epsilon": 1e-3},
        # index 1 is a bias: it keeps its learning rate, the others get the trust ratio
        "names": {"momentum": 0.9, "wd": 0.03,
                  "param_idx2name": {0: "fc_weight", 1: "fc_bias", 2: "bn_gamma"}},
    },
    errors=[
        ({"momentum": -0.1}, ValueError, "momentum"),
        ({"eta": -1.0}, ValueError, "eta"),
        ({"epsilon": -1e-8}, ValueError, "epsilon"),
        ({"eta": "big"}, TypeError, "eta"),
        ({"learning_rate": -1.0}, ValueError, "learning_rate"),
        ({"eps": 1e-8}, TypeError, "eps"),                       # MXNet 1.x name
        ({"momentum_correction": True}, TypeError, "momentum_correction"),
    ],
)
