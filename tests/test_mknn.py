"MKNN against brute-force and PRH references, property tests, nulls, selection, bad input."
import itertools, random
import pytest, torch
import torch.nn.functional as F
import hera_nbs.mknn as mknn_module
from hera_nbs.mknn import (NeighbourCache, bootstrap_ci, chance_level, knn_lists, lists_from_gram, mutual_knn,
                           permutation_null, score_heads, score_layers, streamed_lists)
from hera_nbs.select import select_heads

def brute_knn(x, k, normalize=True):
    "Set-based reference: for each i, sort all j != i by (similarity desc, index asc) in pure Python."
    x = F.normalize(x.double(), dim=-1) if normalize else x.double()
    sims = (x @ x.T).tolist()
    return [set(sorted((j for j in range(len(x)) if j != i), key=lambda j: (-sims[i][j], j))[:k]) for i in range(len(x))]

def brute_mknn(a, b, k, normalize=True):
    na, nb = brute_knn(a, k, normalize), brute_knn(b, k, normalize)
    return sum(len(p & q) / k for p, q in zip(na, nb)) / len(a)

def prh_mutual_knn(feats_A, feats_B, topk):
    "The Platonic Representation Hypothesis reference (minyoungg/platonic-rep, metrics.py), transcribed."
    def nn(f): return (f @ f.T).fill_diagonal_(-1e8).argsort(dim=1, descending=True)[:, :topk]
    knn_A, knn_B = nn(feats_A), nn(feats_B)
    n = knn_A.shape[0]
    r = torch.arange(n).unsqueeze(1)
    ma, mb = torch.zeros(n, n), torch.zeros(n, n)
    ma[r, knn_A] = 1.0; mb[r, knn_B] = 1.0
    return ((ma * mb).sum(dim=1) / topk).mean().item()

def prh_remove_outliers(feats, q):
    q_val = torch.quantile(feats.abs().flatten(start_dim=1), q, dim=1).mean()
    return feats.clamp(-q_val, q_val)

@pytest.mark.parametrize('seed', range(5))
@pytest.mark.parametrize('normalize', [True, False])
def test_matches_brute_force_on_random_data(seed, normalize):
    g = torch.Generator().manual_seed(seed)
    n, k = 30 + seed * 7, 1 + seed * 2
    a, b = torch.randn(n, 6, generator=g), torch.randn(n, 4, generator=g)
    b[:, :2] += a[:, :2]                                    # some real alignment
    assert mutual_knn(a, b, k, normalize) == pytest.approx(brute_mknn(a, b, k, normalize), abs=1e-6)

def random_break_mknn(a, b, k, rng):
    "One draw of MKNN with every tie broken at random, independently in A and in B (pure Python)."
    def knn(x):
        sims, key = (x.double() @ x.double().T).tolist(), [rng.random() for _ in range(len(x))]
        return [set(sorted((j for j in range(len(x)) if j != i), key=lambda j: (-sims[i][j], key[j]))[:k])
                for i in range(len(x))]
    return sum(len(p & q) / k for p, q in zip(knn(a), knn(b))) / len(a)

def expected_mknn(a, b, k):
    "The definition of the tie-invariant score: sum over j of P_a(j in kNN) P_b(j in kNN), from the full rows."
    def p(x):
        g = (x.double() @ x.double().T).fill_diagonal_(float('-inf'))
        kth = g.sort(-1, descending=True).values[:, k - 1:k]
        above, tied = (g > kth).double(), (g == kth).double()
        return above + tied * (k - above.sum(-1, keepdim=True)) / tied.sum(-1, keepdim=True)
    return ((p(a) * p(b)).sum(-1) / k).mean().item()

@pytest.mark.parametrize('seed', range(5))
def test_matches_brute_force_with_ties(seed):
    "Integer-valued features on a small grid: many exact ties. Lists break them by the lower index; the score takes "
    "their expectation over random tie breaks."
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randint(0, 3, (25, 2), generator=g).float(), torch.randint(0, 2, (25, 3), generator=g).float()
    for k in (1, 3, 8, 24):
        assert mutual_knn(a, b, k, normalize=False) == pytest.approx(expected_mknn(a, b, k), abs=1e-6)
        lists = knn_lists(a, k, normalize=False)
        assert [set(r) for r in lists.tolist()] == brute_knn(a, k, normalize=False)

def test_ties_match_random_tie_breaking():
    "The expectation is what random tie breaking averages to (Monte Carlo, 400 draws)."
    g, rng = torch.Generator().manual_seed(7), random.Random(0)
    a, b = torch.randint(0, 3, (40, 2), generator=g).float(), torch.randint(0, 3, (40, 2), generator=g).float()
    draws = [random_break_mknn(a, b, 5, rng) for _ in range(400)]
    sd = torch.tensor(draws).std().item() / 20
    assert abs(sum(draws) / 400 - mutual_knn(a, b, 5, normalize=False)) < 4 * sd + 1e-9
    assert mutual_knn(a, b, 5, normalize=False) != pytest.approx(brute_mknn(a, b, 5, normalize=False), abs=1e-3)

def test_duplicated_samples_are_not_agreement():
    "Identical rows: the lower-index rule picks the same neighbours in both (1.000); the expectation is k/(N-1)."
    x = torch.ones(10, 4)
    assert brute_mknn(x, x, 5, normalize=False) == 1.0
    assert mutual_knn(x, x, 5, normalize=False) == pytest.approx(5 / 9, abs=1e-6)
    heads = torch.ones(10, 2, 3, 4)
    heads[:, 1, 2] = torch.arange(40.).view(10, 4) ** 2              # one head without ties
    cache = NeighbourCache(heads, x, k_max=5, normalize=False)
    assert torch.allclose(cache.head_scores(5)[0], torch.full((3,), 5 / 9))
    assert cache.head_scores(3)[1, 2] == pytest.approx(expected_mknn(heads[:, 1, 2], x, 3), abs=1e-6)

@pytest.mark.parametrize('seed', range(3))
def test_cache_matches_definition_with_ties(seed):
    "All heads at once, with ties running past the k+1 listed neighbours (widened tables), for every k <= k_max."
    g = torch.Generator().manual_seed(seed)
    heads = torch.randint(0, 3, (60, 2, 3, 3), generator=g).float()
    teacher = torch.randint(0, 3, (60, 3), generator=g).float()
    heads[:, 0, 0] = torch.randn(60, 3, generator=g)                 # a head without ties
    cache = NeighbourCache(heads, teacher, k_max=10, normalize=False)
    for k in (1, 4, 10):
        want = torch.tensor([[expected_mknn(heads[:, l, h], teacher, k) for h in range(3)] for l in range(2)])
        assert torch.allclose(cache.head_scores(k), want.float(), atol=1e-6)

@pytest.mark.parametrize('seed', range(3))
def test_matches_prh_reference(seed):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(200, 64, generator=g), torch.randn(200, 32, generator=g)
    b[:, :16] += 0.5 * a[:, :16]
    assert mutual_knn(a, b, 10, normalize=False) == pytest.approx(prh_mutual_knn(a, b, 10), abs=1e-6)
    na, nb = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    assert mutual_knn(a, b, 10) == pytest.approx(prh_mutual_knn(na, nb, 10), abs=1e-6)
    # PRH's prepare_features + compute_score: clamp at q=0.95, then L2-normalise
    ca, cb = F.normalize(prh_remove_outliers(a, .95), dim=-1), F.normalize(prh_remove_outliers(b, .95), dim=-1)
    assert mutual_knn(a, b, 10, clamp_q=.95) == pytest.approx(prh_mutual_knn(ca, cb, 10), abs=1e-6)

def test_permutation_invariant_and_symmetric():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(80, 5, generator=g), torch.randn(80, 7, generator=g)
    b[:, :3] += a[:, :3]
    perm = torch.randperm(80, generator=g)
    s = mutual_knn(a, b, 7)
    assert mutual_knn(a[perm], b[perm], 7) == pytest.approx(s, abs=1e-6)
    assert mutual_knn(b, a, 7) == pytest.approx(s, abs=1e-6)
    assert 0 <= s <= 1

def test_batched_heads_equal_per_head_and_chunking_changes_nothing():
    g = torch.Generator().manual_seed(1)
    heads, teacher, hidden = torch.randn(70, 3, 5, 4, generator=g), torch.randn(70, 9, generator=g), torch.randn(70, 3, 11, generator=g)
    s = score_heads(heads, teacher, k=6)
    ref = torch.tensor([[mutual_knn(heads[:, l, h], teacher, 6) for h in range(5)] for l in range(3)])
    torch.testing.assert_close(s, ref, rtol=0, atol=1e-6)
    assert torch.equal(knn_lists(heads.movedim(0, -2), 6), knn_lists(heads.movedim(0, -2), 6, max_bytes=1))
    torch.testing.assert_close(score_layers(hidden, teacher, k=6),
                               torch.tensor([mutual_knn(hidden[:, l], teacher, 6) for l in range(3)]), rtol=0, atol=1e-6)

@pytest.mark.parametrize('n,d,kind', [(1000, 64, 'cosine'), (2051, 16, 'cosine'), (1500, 2, 'cosine'),
                                      (1200, 32, 'raw'), (1000, 8, 'coarse'), (1300, 64, 'clustered')])
def test_half_gram_lists_equal_whole_gram_lists(n, d, kind):
    "The strip kernels against `lists_from_gram` on the whole Gram matrix: the same lists and similarities (the same "
    "dot products, computed by differently shaped matrix products: equal here, to the last bit on this project's CPUs)."
    g = torch.Generator().manual_seed(n + d)
    x = torch.randn(n, d, generator=g)
    if kind == 'clustered':                                                # hubs and near-ties
        x = torch.randn(20, d, generator=g).repeat(n // 20 + 1, 1)[:n] + 0.05 * x
    if kind == 'coarse': x = x.round()                                     # exact ties, some past the buffer
    if kind != 'raw' and kind != 'coarse': x = F.normalize(x, dim=-1)
    ref, ref_val = lists_from_gram(x @ x.T, 10, values=True)
    for max_bytes in (2**22, 4 * n * 40):                                   # strips of 128 and of 40 rows
        lists, val = streamed_lists(x, 10, max_bytes=max_bytes, values=True)
        assert torch.equal(lists, ref)
        torch.testing.assert_close(val, ref_val, rtol=0, atol=1e-6)

def test_half_gram_lists_survive_bad_guesses():
    "Guessed bounds far too high (every list redone) or far too low (buffers fill and compact): the same lists."
    x = F.normalize(torch.randn(900, 24, generator=torch.Generator().manual_seed(3)), dim=-1)
    ref = lists_from_gram(x @ x.T, 10)
    for extra in (-10, 200):
        old, mknn_module._EXTRA = mknn_module._EXTRA, extra
        try: assert torch.equal(streamed_lists(x, 10), ref)
        finally: mknn_module._EXTRA = old

def test_cached_lists_serve_every_smaller_k():
    g = torch.Generator().manual_seed(2)
    heads, teacher = torch.randn(50, 2, 3, 4, generator=g), torch.randn(50, 5, generator=g)
    cache = NeighbourCache(heads, teacher, k_max=15)
    for k in (1, 4, 10, 15):
        torch.testing.assert_close(cache.head_scores(k), score_heads(heads, teacher, k), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match='this table scores k from 1 to 15'): cache.head_scores(16)

def test_null_is_centred_on_chance_and_bootstrap_covers():
    g = torch.Generator().manual_seed(3)
    heads, teacher = torch.randn(100, 2, 2, 6, generator=g), torch.randn(100, 6, generator=g)
    cache = NeighbourCache(heads, teacher, k_max=10)
    null = permutation_null(cache.heads, cache.teacher, 10, n_perm=300, seed=1)
    assert null.mean().item() == pytest.approx(chance_level(100, 10), abs=0.005)
    lo, hi = bootstrap_ci(cache.per_sample(10), n_boot=500)
    s = cache.head_scores(10)
    assert ((lo <= s) & (s <= hi)).all() and (hi - lo > 0).all()

def test_select_heads_modes():
    s = torch.tensor([[0.3, 0.1, 0.5], [0.2, 0.9, 0.1]])
    assert select_heads(s, 3, 'worst') == [(0, 1), (1, 2), (1, 0)]
    assert select_heads(s, 2, 'best') == [(1, 1), (0, 2)]
    r = select_heads(s, 6, 'random', seed=4)
    assert sorted(r) == sorted(itertools.product(range(2), range(3))) and r == select_heads(s, 6, 'random', seed=4)

@pytest.mark.parametrize('call,match', [
    (lambda: mutual_knn(torch.randn(10, 3), torch.randn(10, 3), k=10), r'k=10 must be in \[1, N-1\]'),
    (lambda: mutual_knn(torch.randn(1, 3), torch.randn(1, 3), k=1), 'N=1 samples'),
    (lambda: mutual_knn(torch.randn(10, 3), torch.randn(9, 3)), 'same, paired samples'),
    (lambda: mutual_knn(torch.tensor([[float('inf'), 0.]] * 5), torch.randn(5, 2), k=2), 'NaN/inf'),
    (lambda: mutual_knn(torch.randn(5), torch.randn(5), k=2), r'two \[N, D\] matrices'),
    (lambda: score_heads(torch.randn(10, 2, 3), torch.randn(10, 3), k=2), r'heads must be \[N, L, H, d\]'),
    (lambda: score_heads(torch.randn(10, 1, 2, 3), torch.randn(9, 3), k=2), 'heads have 10 samples but the teacher has 9'),
    (lambda: select_heads(torch.tensor([[float('nan'), 1.]]), 1), 'NaN'),
    (lambda: select_heads(torch.rand(2, 2), 1, mode='median'), "unknown mode 'median'"),
])
def test_bad_input_is_refused_clearly(call, match):
    with pytest.raises(ValueError, match=match): call()

@pytest.mark.parametrize('seed', range(2))
def test_calibration_matches_calibrated_similarity(seed):
    "`calibrated_scores` against the independent implementation of the Aristotelian-view paper (same permutations)."
    from calibrated_similarity import calibrate
    from hera_nbs.mknn import calibrated_scores
    g = torch.Generator().manual_seed(seed)
    teacher, heads = torch.randn(80, 6, generator=g), torch.randn(80, 1, 3, 4, generator=g)
    heads[:, 0, 1] = teacher[:, :4] + 0.8 * torch.randn(80, 4, generator=g)     # one aligned head, two unrelated
    ours = calibrated_scores(NeighbourCache(heads, teacher, k_max=5), k=5, n_perm=60, seed=seed)
    for h in range(3):
        score, p, tau = calibrate(heads[:, 0, h], teacher, lambda a, b: mutual_knn(a, b, 5), K=60,
                                  generator=torch.Generator().manual_seed(seed))
        assert ours['calibrated'][0, h].item() == pytest.approx(score.item(), abs=1e-6)
        assert ours['p'][0, h].item() == pytest.approx(p.item(), abs=1e-6)
        assert ours['tau'][0, h].item() == pytest.approx(tau.item(), abs=1e-6)
    assert ours['p'][0, 1] < 0.05 and ours['calibrated'][0, 1] > 0
