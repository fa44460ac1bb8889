"HeraLoss against a brute-force loop, gradient check, invariances, and 2-process gloo == 1 process."
import datetime, gc, os, socket, tempfile, time
import pytest, torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file
from hera_nbs.loss import HeraLoss
from references import hera_loss_reference

@pytest.mark.parametrize('normalize', [True, False])
@pytest.mark.parametrize('m', [1, 3])
@pytest.mark.parametrize('seed', range(3))
def test_matches_brute_force(normalize, m, seed):
    g = torch.Generator().manual_seed(seed)
    n, k = 12 + 3 * seed, 2 + seed
    z, t = torch.randn(m, n, 5, generator=g) * (1 if normalize else .1), torch.randn(n, 4, generator=g)
    valid = torch.rand(n, generator=g) > .2
    tau = .07 if normalize else .5
    loss = HeraLoss(k=k, tau=tau, normalize=normalize)
    got = loss(z if m > 1 else z[0], t, valid).item()
    assert got == pytest.approx(hera_loss_reference(z, t, valid, k, tau, normalize), rel=1e-4, abs=1e-4)

def test_gradcheck():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 9, 4, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(9, 3, generator=g, dtype=torch.float64)
    valid = torch.ones(9, dtype=torch.bool); valid[2] = False
    loss = HeraLoss(k=3, tau=.5).double()
    assert torch.autograd.gradcheck(lambda z: loss(z, t, valid), (z,))
    loss(z, t, valid).backward()                                  # d/d log τ against a central difference
    eps, lt = 1e-6, loss.log_tau.item()
    def at(v):
        with torch.no_grad(): loss.log_tau.fill_(v); return loss(z, t, valid).item()
    assert loss.log_tau.grad.item() == pytest.approx((at(lt + eps) - at(lt - eps)) / (2 * eps), rel=1e-5)

def test_batch_permutation_and_skip():
    g = torch.Generator().manual_seed(1)
    z, t = torch.randn(2, 20, 6, generator=g), torch.randn(20, 5, generator=g)
    perm = torch.randperm(20, generator=g)
    loss = HeraLoss(k=5)
    torch.testing.assert_close(loss(z[:, perm], t[perm]), loss(z, t))
    few = torch.zeros(20, dtype=torch.bool); few[:5] = True
    assert loss(z, t, few).item() == 0 and loss.skipped == 1
    assert torch.isfinite(loss(z * 1e4, t)).item()   # huge vectors: normalised, no overflow

# --- distributed ------------------------------------------------------------------------------------------------

class Net(torch.nn.Module):
    "Two 'heads' (linear encoders) and the loss, as the trainer wraps them for DDP."
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.enc, self.loss = torch.nn.Linear(8, 2 * 6), HeraLoss(k=10)
    def forward(self, x, t, valid): return self.loss(self.enc(x).view(len(x), 2, 6).transpose(0, 1), t, valid)

def _data():
    g = torch.Generator().manual_seed(5)
    x, t = torch.randn(16, 8, generator=g), torch.randn(16, 5, generator=g)
    valid = torch.ones(16, dtype=torch.bool); valid[[3, 12]] = False
    return x, t, valid

def _worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60))  # fail, never hang
    torch.set_num_threads(1)
    x, t, valid = _data()
    n = 16 // world
    net = torch.nn.parallel.DistributedDataParallel(Net())
    loss = net(x[rank * n:(rank + 1) * n], t[rank * n:(rank + 1) * n], valid[rank * n:(rank + 1) * n])
    loss.backward()
    total = loss.detach().clone(); dist.all_reduce(total); total /= world
    if rank == 0:
        save_file({'loss': total.reshape(1), **{k: p.grad for k, p in net.module.named_parameters()}}, out)
    # drop DDP's reducer while the process group is alive: freeing the group from inside the reducer's
    # destructor deadlocks gloo's worker thread on the GIL (seen with torch 2.13)
    del net, loss; gc.collect()
    dist.destroy_process_group()

def _free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def test_two_processes_equal_one_process():
    x, t, valid = _data()
    net = Net()
    loss = net(x, t, valid); loss.backward()
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, 'grads.safetensors')
        ctx = mp.spawn(_worker, args=(2, _free_port(), out), nprocs=2, join=False)
        deadline = time.monotonic() + 120
        while not ctx.join(timeout=5):              # fail, never hang
            if time.monotonic() > deadline:
                for p in ctx.processes: p.kill()
                pytest.fail('the 2-process run did not finish in 120 s')
        got = load_file(out)
    assert got['loss'].item() == pytest.approx(loss.item(), abs=1e-5)
    for k, p in net.named_parameters():
        torch.testing.assert_close(got[k], p.grad, rtol=1e-5, atol=1e-5)
