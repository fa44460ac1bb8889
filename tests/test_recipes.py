"Every data recipe's conversion on small fabricated files in its source's format; the result passes check_llava."
import json, subprocess, sys, zipfile
from pathlib import Path
import pytest
from PIL import Image
from hera_nbs.data import caption_records
from hera_nbs.data import check_llava

RECIPES = Path(__file__).parents[1] / 'data_recipes'
sys.path.insert(0, str(RECIPES))
import coco_captions, grand_scoring, llava_instruct, llava_pretrain, tiny_world
from _common import extract

def _png(path, colour=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True); Image.new('RGB', (16, 16), colour).save(path); return path

def _zip(path, files:dict):
    with zipfile.ZipFile(path, 'w') as z:
        for name, src in files.items(): z.write(src, name)
    return path

def _conv(q, a): return [{'from': 'human', 'value': q}, {'from': 'gpt', 'value': a}]

def test_llava_pretrain(tmp_path):
    src = tmp_path / 'src'; img = _png(src / 'a.png')
    z = _zip(src / 'images.zip', {'00000/a.png': img, '00000/b.png': img})
    js = src / 'blip.json'; js.write_text(json.dumps([dict(id='a', image='00000/a.png', conversations=_conv('<image>\n', 'a red square')),
                                                     dict(id='b', image='00000/b.png', conversations=_conv('<image>\n', 'red'))]))
    path = llava_pretrain.prepare(js, z, tmp_path / 'out')
    r = check_llava(path, tmp_path / 'out' / 'images', template='plain', progress=False)
    assert r.ok and r.n == 2
    assert len(caption_records(path, tmp_path / 'out' / 'images')) == 2

def test_llava_instruct_with_a_missing_source(tmp_path):
    src = tmp_path / 'src'; img = _png(src / 'x.jpg')
    coco = _zip(src / 'train2017.zip', {'train2017/1.jpg': img})
    gqa = _zip(src / 'images.zip', {'images/2.jpg': img})
    samples = [dict(id='c', image='coco/train2017/1.jpg', conversations=_conv('<image>\nq', 'a')),
               dict(id='g', image='gqa/images/2.jpg', conversations=_conv('<image>\nq', 'a')),
               dict(id='o', image='ocr_vqa/images/3.jpg', conversations=_conv('<image>\nq', 'a')),
               dict(id='t', conversations=_conv('text only', 'fine'))]
    js = src / 'mix.json'; js.write_text(json.dumps(samples))
    out = tmp_path / 'out'
    full = llava_instruct.prepare(js, {coco: 'coco', gqa: 'gqa'}, out)
    r = check_llava(full, out, progress=False)
    assert r.problems == {'missing image': ['o']} and r.text_only == 1
    kept = llava_instruct.prepare(js, {coco: 'coco', gqa: 'gqa'}, out, drop_missing=True)
    assert [s['id'] for s in json.loads(kept.read_text())] == ['c', 'g', 't']
    assert check_llava(kept, out, progress=False).ok

def test_grand_jsonl_with_image_paths(tmp_path):
    src = tmp_path / 'snap'; _png(src / 'images' / 'g1.jpg')
    (src / 'data.jsonl').write_text('\n'.join(json.dumps(dict(id=i, image='g1.jpg', dense_caption=f'scene {i}')) for i in range(3)))
    path = grand_scoring.convert(src, tmp_path / 'out')
    assert path.name == 'grand_3.json'
    assert check_llava(path, tmp_path / 'out', template='plain', progress=False).ok
    assert [c['caption'] for c in caption_records(path, tmp_path / 'out')] == ['scene 0', 'scene 1', 'scene 2']

def test_grand_parquet_style_image_bytes(tmp_path, monkeypatch):
    png = _png(tmp_path / 'a.png').read_bytes()          # a parquet Image column reads as {'bytes': ..., 'path': ...}
    monkeypatch.setattr(grand_scoring, 'read_rows', lambda src: [dict(image={'bytes': png, 'path': None}, caption='c')] * 2)
    path = grand_scoring.convert(tmp_path, tmp_path / 'out')
    assert check_llava(path, tmp_path / 'out', template='plain', progress=False).ok

def test_grand_missing_image(tmp_path):
    (tmp_path / 'snap').mkdir(); (tmp_path / 'snap' / 'd.json').write_text(json.dumps([dict(image='nowhere.jpg', caption='x')]))
    with pytest.raises(FileNotFoundError, match="image 'nowhere.jpg' not found"): grand_scoring.convert(tmp_path / 'snap', tmp_path / 'out')

def test_grand_unknown_columns(tmp_path):
    (tmp_path / 'snap').mkdir(); (tmp_path / 'snap' / 'd.jsonl').write_text(json.dumps(dict(pic='a.jpg', words='w')))
    with pytest.raises(ValueError, match=r"columns: \['pic', 'words'\]"): grand_scoring.convert(tmp_path / 'snap', tmp_path / 'out')

def test_coco(tmp_path):
    _png(tmp_path / 'out' / 'val2017' / '000000000001.jpg'); _png(tmp_path / 'out' / 'val2017' / '000000000002.jpg')
    ann = dict(images=[dict(id=2, file_name='000000000002.jpg'), dict(id=1, file_name='000000000001.jpg')],
               annotations=[dict(image_id=1, caption='a cat'), dict(image_id=1, caption='a cat on a mat'),
                            dict(image_id=2, caption='two dogs')])
    (tmp_path / 'cap.json').write_text(json.dumps(ann))
    path = coco_captions.convert(tmp_path / 'cap.json', tmp_path / 'out')
    recs = caption_records(path, tmp_path / 'out')
    assert [r['caption'] for r in recs] == ['a cat on a mat', 'two dogs']
    assert check_llava(path, tmp_path / 'out', template='plain', progress=False).ok

def test_extract_is_redone_after_an_interruption(tmp_path):
    img = _png(tmp_path / 'a.png'); z = _zip(tmp_path / 'a.zip', {'d/a.png': img})
    extract(z, tmp_path / 'x'); (tmp_path / 'x' / 'd' / 'a.png').unlink()
    extract(z, tmp_path / 'x'); assert not (tmp_path / 'x' / 'd' / 'a.png').exists()      # marker present: skipped
    (tmp_path / 'x' / '.extracted-a.zip').unlink(); extract(z, tmp_path / 'x')
    assert (tmp_path / 'x' / 'd' / 'a.png').exists()

def test_tiny_world(tmp_path):
    "The world recipe writes the demo's two stages; both pass the checker, and the CLI script exits 0."
    world = tiny_world.write(tmp_path, n_train=32)
    s1, s2 = (json.loads((world / f'stage{i}.json').read_text()) for i in (1, 2))
    assert len(s1) == 32 and len(s2) == 33 and sum('image' not in s for s in s2) == 1     # n_train // 32 text-only
    assert check_llava(world / 'stage1.json', world, template='plain', progress=False).ok
    assert check_llava(world / 'stage2.json', world, template='chat', progress=False).ok
    r = subprocess.run([sys.executable, str(RECIPES / 'tiny_world.py'), '--out', str(tmp_path / 'cli'), '--n-train', '16'],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
