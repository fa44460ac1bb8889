"No evaluation or check scene occurs in pretraining or training (by content); scoring sets hold no repeats."
import io
import pytest
from hera_nbs.demo import write_world
from hera_nbs.parts import PartsRecipe, QUICK_PARTS, check_records, pretraining_records
from hera_nbs.world import HELD_OUT_EVERY, WORLD_SEEDS, split_of, world_pairs, world_scenes

def png(img):
    b = io.BytesIO()
    img.save(b, format='PNG')
    return b.getvalue()

@pytest.mark.parametrize('world_seed', [0, 1])
def test_held_out_scenes_never_trained_on(tmp_path, world_seed):
    "The sets the parts and the demo really draw: pretraining (both recipes), both stages, evaluation and checks."
    train, held_out, _ = write_world(tmp_path, n_train=1024, n_eval=128, world_seed=world_seed)
    trained = {r['scene'] for r in pretraining_records(PartsRecipe())} | {r['scene'] for r in train}
    trained |= {r['scene'] for r in pretraining_records(QUICK_PARTS)}
    evaluated = {r['scene'] for r in held_out} | {r['scene'] for r in check_records()}
    assert len(evaluated) == 128 + 256 - len({r['scene'] for r in held_out} & {r['scene'] for r in check_records()})
    assert not trained & evaluated
    # stage 2's scenes are only on disk: compare the images (a scene renders to one image)
    stage_images = {p.read_bytes() for p in (tmp_path/'world'/'images').glob('stage*.png')}
    assert len(stage_images) > 1024
    assert not stage_images & {png(r['image']) for r in held_out + check_records()}

def test_split_is_by_content_not_seed():
    "The split of a scene depends on what it shows; about 1 in HELD_OUT_EVERY scenes is held out."
    scenes = world_scenes(4000, seed=11)
    share = sum(split_of(s) == 'held-out' for s in scenes) / len(scenes)
    assert abs(share - 1 / HELD_OUT_EVERY) < 0.03
    assert all(split_of(s) == 'train' for s in world_scenes(500, seed=3, prior=0.9, split='train'))
    assert {split_of(s) for s in world_scenes(200, seed=3, split='held-out')} == {'held-out'}

def test_distinct_and_repeats():
    "Without `distinct` random scenes repeat (small scenes are few); with it none does."
    plain = world_scenes(1000, seed=0)
    assert len(set(plain)) < 1000
    assert len(set(world_scenes(1000, seed=0, distinct=True))) == 1000
    assert [r['caption'] for r in world_pairs(5, seed=2, distinct=True)] == \
           [r['caption'] for r in world_pairs(5, seed=2, distinct=True)]

def test_seeds_named_once():
    assert set(WORLD_SEEDS) == {'pretraining', 'stage1', 'stage2', 'evaluation', 'checks'}
    assert len(set(WORLD_SEEDS.values())) == len(WORLD_SEEDS)
