"The tiny pretrained parts: deterministic builds, a cache keyed by the recipe, checkpoints that load like real ones."
from dataclasses import replace
import torch
from safetensors.torch import load_file
from hera_nbs.models import build_llava, head_geometry, teacher_from_pretrained
from hera_nbs.parts import PartsRecipe, parts_fingerprint, world_parts
from hera_nbs.store import read_json

MINI = PartsRecipe(n_scenes=64, vision_steps=3, teacher_steps=3, oracle_steps=3, lm_steps=3)

def _weights(d):
    return {f'{p}/{k}': v for p in ('vision', 'teacher', 'teacher-oracle', 'llm') for k, v in load_file(d/p/'model.safetensors').items()}

def test_build_is_deterministic(tmp_path):
    a = _weights(world_parts(MINI, tmp_path/'a', progress=False, oracle=True))
    b = _weights(world_parts(MINI, tmp_path/'b', progress=False, oracle=True))
    assert a.keys() == b.keys() and len(a) > 50
    assert [k for k in a if not torch.equal(a[k], b[k])] == []

def test_training_moves_every_part(tmp_path):
    "Three steps already change the weights of each part away from a build with no steps."
    a = _weights(world_parts(MINI, tmp_path, progress=False, oracle=True))
    few = replace(MINI, vision_steps=1, teacher_steps=1, oracle_steps=1, lm_steps=1)
    b = _weights(world_parts(few, tmp_path, progress=False, oracle=True))
    for part in ('vision/', 'teacher/', 'teacher-oracle/', 'llm/'):
        assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith(part)), part

def test_cache_hit_and_rebuild_on_recipe_change(tmp_path):
    a = world_parts(MINI, tmp_path, progress=False)
    stamp = (a/'report.json').stat().st_mtime_ns
    assert world_parts(MINI, tmp_path, progress=False) == a and (a/'report.json').stat().st_mtime_ns == stamp
    b = world_parts(replace(MINI, lm_steps=4), tmp_path, progress=False)
    assert b != a and read_json(b/'report.json')['recipe']['lm_steps'] == 4
    assert parts_fingerprint(replace(MINI, prior=0.5)) != parts_fingerprint(MINI)
    assert sorted(p.name for p in tmp_path.joinpath('parts').iterdir()) == sorted([a.name, b.name])   # no leftovers

def test_parts_load_like_real_checkpoints(tmp_path):
    d = world_parts(MINI, tmp_path, progress=False, oracle=True)
    model, proc = build_llava(str(d/'llm'), str(d/'vision'))
    g = head_geometry(model)
    assert (g.n_layers, g.n_heads) == (4, 8)
    assert teacher_from_pretrained(str(d/'teacher')).dim == teacher_from_pretrained(str(d/'teacher-oracle')).dim == 64
    assert proc.image_processor.size == {'height': 48, 'width': 48}
