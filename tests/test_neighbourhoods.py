"UMAP maps: built on exactly MKNN's neighbour graph, reproducible, clear errors for small N and large k."
import numpy as np, pytest, torch
from hera_nbs.mknn import NeighbourCache, knn_lists
from hera_nbs.neighbourhoods import NeighbourhoodMaps, plot_pair, umap_from_lists

def _maps(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    heads, teacher = torch.randn(n, 2, 3, 4, generator=g), torch.randn(n, 6, generator=g)
    return NeighbourhoodMaps(heads, teacher, NeighbourCache(heads, teacher, k_max=8), seed=seed)

def test_umap_graph_is_the_mknn_graph(monkeypatch):
    "The (indices, distances) handed to UMAP are self + MKNN's k-NN set, per row, with ascending distances."
    import umap
    seen = {}
    orig = umap.UMAP.__init__
    def spy(self, *a, **kw): seen.update(kw); orig(self, *a, **kw)
    monkeypatch.setattr(umap.UMAP, '__init__', spy)
    x = torch.randn(30, 5, generator=torch.Generator().manual_seed(1))
    lists = knn_lists(x, 6)
    umap_from_lists(x, lists, 6)
    idx, dist = seen['precomputed_knn']
    assert seen['n_neighbors'] == 7 and (idx[:, 0] == np.arange(30)).all() and (dist[:, 0] == 0).all()
    assert all(set(idx[i, 1:]) == set(lists[i].tolist()) for i in range(30))
    assert (np.diff(dist, axis=1) >= 0).all()

def test_maps_reproducible_and_cached():
    m1, m2 = _maps(), _maps()
    np.testing.assert_array_equal(m1.map((1, 2), 5), m2.map((1, 2), 5))
    a = m1.map('teacher', 5)
    assert m1.map('teacher', 5) is a and len(m1._maps) == 2

def test_highlight_rings_match_overlap():
    m = _maps()
    axes = plot_pair(m, 0, 1, sample=4, k=6)
    labels = {c.get_label().split(' (')[0]: int(c.get_label().split('(')[1][:-1]) for c in axes[0].collections[1:4]}
    shared = round(m.overlap(0, 1, 6)[4].item() * 6)
    assert labels == {'teacher only': 6 - shared, 'head only': 6 - shared, 'shared': shared}

@pytest.mark.parametrize('n,k,match', [(10, 3, 'at least 15 points'), (20, 9, r'k=9 must be in \[1, 8\]')])
def test_bad_sizes_get_clear_messages(n, k, match):
    x = torch.randn(n, 4)
    with pytest.raises(ValueError, match=match): umap_from_lists(x, knn_lists(x, min(8, n - 1)), k)

def test_bad_layer_and_sample():
    m = _maps()
    with pytest.raises(ValueError, match='layer 5 was not captured'): m.map((5, 0), 4)
    with pytest.raises(ValueError, match='sample 40 out of range'): plot_pair(m, 0, 0, sample=40, k=4)
