"Capture: exact compact features for every family and mode, streaming, resume, stale caches, bad input."
import pytest, torch
from hera_nbs import capture as C
from hera_nbs.capture import CaptionCollate, CaptureStore, PlainCollate, StaleCacheError, capture
from hera_nbs.heads import HeadPooler
from hera_nbs.models import TINY_FAMILIES, head_geometry, head_outputs, tiny_mllm, tiny_teacher
from hera_nbs.world import world_pairs

def full_head_features(model, batch):
    "Brute force: every head's full [T, d_model] contribution, averaged over the pool mask: [B, L, H, d_model]."
    g, seen = head_geometry(model), []
    hs = [o.register_forward_pre_hook(lambda m, a: seen.append(a[0])) for o in g.o_projs]
    batch = dict(batch); mask = batch.pop('pool_mask'); batch.pop('teacher_pixels', None)
    with torch.no_grad(): model.base_model(**batch)
    for h in hs: h.remove()
    m = mask[..., None, None].float()
    return torch.stack([(head_outputs(a, o, g.n_heads) * m).sum(1) / m.sum(1) for a, o in zip(seen, g.o_projs)], 1)

@pytest.mark.parametrize('family', list(TINY_FAMILIES))
@pytest.mark.parametrize('mode', ['text', 'mllm'])
def test_compact_features_keep_every_gram_matrix(family, mode, cache, tmp_path):
    model, proc = tiny_mllm(family, cache_dir=cache)
    recs = world_pairs(12, seed=3)
    collate = CaptionCollate(proc.tokenizer) if mode == 'text' else PlainCollate(proc)
    store = capture(model, recs, collate, tmp_path / 'c', batch_size=4, shard_size=8, progress=False)
    z, full = store.heads(), full_head_features(model, collate(recs))
    g = head_geometry(model)
    assert z.shape == (12, g.n_layers, g.n_heads, g.head_dim) and full.shape[-1] == g.d_model
    torch.testing.assert_close(torch.einsum('blhd,clhd->lhbc', z, z), torch.einsum('blhd,clhd->lhbc', full, full),
                               rtol=1e-4, atol=1e-5)

def test_layer_features_are_pooled_layer_outputs(cache, tmp_path):
    model, proc = tiny_mllm('llava-llama', cache_dir=cache)
    recs = world_pairs(6)
    store = capture(model, recs, CaptionCollate(proc.tokenizer), tmp_path / 'c', batch_size=2, shard_size=2, progress=False)
    b = CaptionCollate(proc.tokenizer)(recs)
    mask = b.pop('pool_mask')
    with torch.no_grad(): hs = model.base_model(**b, output_hidden_states=True).hidden_states[1:]
    m = mask[..., None].float()
    ref = torch.stack([(h * m).sum(1) / m.sum(1) for h in hs], 1)
    ref[:, -1] = store.hidden()[:, -1]     # transformers applies the final norm to the last hidden state; the hook sees the raw output
    torch.testing.assert_close(store.hidden(), ref, rtol=1e-4, atol=1e-5)

def test_ram_is_bounded_by_the_shard(cache, tmp_path, monkeypatch):
    model, proc = tiny_mllm('llava-qwen2', cache_dir=cache)
    held, write = [], C._write_shard
    monkeypatch.setattr(C, '_write_shard', lambda p, m, buf: (held.append(sum(len(t) for t in buf['index'])), write(p, m, buf)))
    store = capture(model, world_pairs(50), CaptionCollate(proc.tokenizer), tmp_path / 'c', batch_size=5, shard_size=10, progress=False)
    assert held == [10] * 5 and store.n == 50

@pytest.mark.parametrize('stop_at', [3, 17, 29])
def test_resume_after_a_kill_gives_identical_store(cache, tmp_path, stop_at):
    model, proc = tiny_mllm('llava-qwen3', cache_dir=cache)
    teacher, recs = tiny_teacher(cache_dir=cache), world_pairs(30, seed=2)
    full = capture(model, recs, CaptionCollate(proc.tokenizer, teacher), tmp_path / 'full', batch_size=4, shard_size=8, progress=False)
    class Kill(Exception): pass
    class Dying(list):
        def __getitem__(self, i):
            if i == stop_at: raise Kill
            return list.__getitem__(self, i)
    with pytest.raises(Kill):
        capture(model, Dying(recs), CaptionCollate(proc.tokenizer, teacher), tmp_path / 'cut', batch_size=4, shard_size=8, progress=False)
    with pytest.raises(RuntimeError, match='incomplete'): CaptureStore(tmp_path / 'cut')
    done = capture(model, recs, CaptionCollate(proc.tokenizer, teacher), tmp_path / 'cut', batch_size=4, shard_size=8, progress=False)
    for key in ('heads', 'hidden', 'teacher', 'index'):
        assert torch.equal(getattr(done, key)(), getattr(full, key)()), key

def test_stale_cache_is_refused_with_what_differs(cache, tmp_path):
    model, proc = tiny_mllm('llava-qwen2', cache_dir=cache)
    other, _ = tiny_mllm('llava-qwen2', seed=1, cache_dir=cache)
    recs, col = world_pairs(8), CaptionCollate(proc.tokenizer)
    capture(model, recs, col, tmp_path / 'c', batch_size=4, shard_size=4, progress=False)
    with pytest.raises(StaleCacheError, match='different model'): capture(other, recs, col, tmp_path / 'c', batch_size=4, shard_size=4)
    with pytest.raises(StaleCacheError, match='different layers'): capture(model, recs, col, tmp_path / 'c', layers=[0], batch_size=4, shard_size=4)
    with pytest.raises(StaleCacheError, match='different teacher'):
        capture(model, recs, CaptionCollate(proc.tokenizer, tiny_teacher(cache_dir=cache)), tmp_path / 'c', batch_size=4, shard_size=4)

def test_empty_masks_are_counted_not_averaged(cache, tmp_path):
    model, proc = tiny_mllm('llava-qwen2', cache_dir=cache)
    recs = world_pairs(6); recs[1] = dict(recs[1], caption=''); recs[4] = dict(recs[4], caption='')
    store = capture(model, recs, CaptionCollate(proc.tokenizer), tmp_path / 'c', batch_size=3, shard_size=3, progress=False)
    assert store.manifest['n_empty'] == 2 and store.manifest['empty'] == [1, 4]
    assert store.index().tolist() == [0, 2, 3, 5] and torch.isfinite(store.heads()).all()

def test_bad_arguments(cache, tmp_path):
    model, proc = tiny_mllm('llava-qwen2', cache_dir=cache)
    with pytest.raises(ValueError, match='multiple of batch_size'):
        capture(model, world_pairs(4), CaptionCollate(proc.tokenizer), tmp_path / 'c', batch_size=3, shard_size=4)
    with pytest.raises(ValueError, match=r'layers \[7\] out of range'): HeadPooler(model, layers=[7])
    with pytest.raises(FileNotFoundError, match='no capture'): CaptureStore(tmp_path / 'nothing')
