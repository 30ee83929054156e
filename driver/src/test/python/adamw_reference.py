"""Golden values for the driver's optimizer from the reference implementation, torch.optim.

    python3 adamw_reference.py OUT.json

Runs torch.optim.AdamW (and torch.optim.SGD with weight decay) in float32 on a 37-value parameter
(long enough for a vector body and a scalar tail) for 4 steps with fixed gradients and a learning
rate that changes each step, as a schedule does, and records the parameters after every step.
driver/src/test/resources/adamw-reference.json holds its output (torch 1.13, from Debian's
python3-torch); io.lorafleet.driver.optim.AdamWTest holds AdamW against it.
"""
import json
import sys

import torch

N, STEPS = 37, 4
LRS = [1e-3, 8e-4, 5e-4, 2e-4]


def run(make):
    g = torch.Generator().manual_seed(7)
    p = torch.nn.Parameter(torch.randn(N, generator=g, dtype=torch.float32))
    grads = [torch.randn(N, generator=g, dtype=torch.float32) * 10 ** (s - 2) for s in range(STEPS)]
    init = p.detach().clone()
    opt = make([p])
    after = []
    for s in range(STEPS):
        for group in opt.param_groups:
            group["lr"] = LRS[s]
        p.grad = grads[s].clone()
        opt.step()
        after.append(p.detach().clone().tolist())
    return {"init": init.tolist(), "grads": [x.tolist() for x in grads], "lrs": LRS, "after": after}


out = {
    "torch": torch.__version__,
    "adamw": dict(run(lambda ps: torch.optim.AdamW(ps, lr=LRS[0], betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)),
                  beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01),
    "sgd": dict(run(lambda ps: torch.optim.SGD(ps, lr=LRS[0], weight_decay=0.01)), weight_decay=0.01),
}
with open(sys.argv[1], "w") as f:
    json.dump(out, f)
