"Brute-force references that the tests check the library against (the chapters show the same ones)."
import math
import torch
import torch.nn.functional as F

def hera_loss_reference(z:torch.Tensor, t:torch.Tensor, valid:torch.Tensor, k:int, tau:float, normalize:bool=True)->float:
    "Brute force: Python loops over heads, samples and positives, in float64 (`tests/references.py` holds it too)."
    z, t = z.double(), t.double()
    if normalize: z, t = F.normalize(z, dim=-1), F.normalize(t, dim=-1)
    idx = [i for i in range(len(t)) if valid[i]]
    total = 0.
    for zh in z:
        acc = 0.
        for i in idx:
            others = [j for j in idx if j != i]
            pos = sorted(others, key=lambda j: (-(t[i] @ t[j]).item(), j))[:k]
            denom = math.log(sum(math.exp((zh[i] @ zh[m]).item() / tau) for m in others))
            acc += -sum((zh[i] @ zh[j]).item() / tau - denom for j in pos) / k
        total += acc / len(idx)
    return total / len(z)
