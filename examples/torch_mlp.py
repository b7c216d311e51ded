"""Train a PyTorch MLP on scikit-learn's bundled digits with mxopt_numba's LAMB.

The model, the loss and the backward pass are plain PyTorch; the optimizer step runs the
library's Numba kernels on the parameters in place (one launch for the whole model),
driven by torch's own OneCycleLR schedule.  Needs torch and scikit-learn:
``pip install -e ".[torch,examples]"``.

    python examples/torch_mlp.py --epochs 10 --dtype bfloat16
"""
import argparse
import sys


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.01, help="peak learning rate of the cycle")
    p.add_argument("--optimizer", default="lamb", help="any name registered in mxopt_numba")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                   help="parameter dtype; bfloat16 keeps float32 master copies")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or not args.lr > 0:
        print("error: --epochs, --batch-size and --lr must be positive", file=sys.stderr)
        return 2
    try:
        import torch
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:
        print("error: this example needs torch and scikit-learn (%s)" % exc, file=sys.stderr)
        return 2
    import mxopt_numba.torch as mxt

    torch.manual_seed(args.seed)
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data / 16.0, digits.target, test_size=0.25, random_state=args.seed, stratify=digits.target)
    dtype = getattr(torch, args.dtype)
    x_train, x_test = (torch.tensor(x, dtype=dtype) for x in (x_train, x_test))
    y_train, y_test = torch.tensor(y_train), torch.tensor(y_test)

    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)).to(dtype)
    try:
        opt = mxt.Optimizer(model.parameters(), optimizer=args.optimizer, lr=args.lr,
                            multi_precision=args.dtype == "bfloat16")
    except (TypeError, ValueError) as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 2
    steps = -(-len(x_train) // args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps * args.epochs)
    gen = torch.Generator().manual_seed(args.seed)
    for epoch in range(1, args.epochs + 1):
        order = torch.randperm(len(x_train), generator=gen)
        total = 0.0
        for k in range(steps):
            idx = order[k * args.batch_size:(k + 1) * args.batch_size]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x_train[idx]).float(), y_train[idx])
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        with torch.no_grad():
            acc = (model(x_test).argmax(1) == y_test).float().mean().item()
        print("epoch %2d  loss %.4f  test acc %.4f  lr %.3e" % (epoch, total / len(x_train), acc,
                                                               opt.param_groups[0]["lr"]))
    print("test accuracy: %.4f" % acc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
