"""COCO captions (val2017, 5,000 images): a scoring set with human captions, and the ground truth CHAIR needs.

    python data_recipes/coco_captions.py --out data/coco

Writes `OUT/coco_val2017_captions.json` (one sample per image, its longest caption), `OUT/val2017/` and
`OUT/annotations/` (instances_val2017.json holds the object labels that CHAIR compares generated captions with).
"""
import argparse, json, sys
from pathlib import Path
from _common import caption_sample, extract, fetch, report, write_llava_json

URLS = {'images': 'http://images.cocodataset.org/zips/val2017.zip',
        'annotations': 'http://images.cocodataset.org/annotations/annotations_trainval2017.zip'}

def convert(captions_json:Path, out:Path, image_dir:str='val2017')->Path:
    "LLaVA JSON with each image's longest caption."
    ann = json.loads(Path(captions_json).read_text())
    caps = {}
    for a in ann['annotations']: caps.setdefault(a['image_id'], []).append(a['caption'])
    samples = [caption_sample(im['id'], f'{image_dir}/{im["file_name"]}', max(caps[im['id']], key=len))
               for im in sorted(ann['images'], key=lambda im: im['id']) if im['id'] in caps]
    return write_llava_json(samples, Path(out)/'coco_val2017_captions.json')

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', type=Path, default=Path('data/coco'))
    a = p.parse_args()
    for name, url in URLS.items(): extract(fetch(url, a.out/'downloads'/url.rsplit('/', 1)[1]), a.out)
    path = convert(a.out/'annotations'/'captions_val2017.json', a.out)
    sys.exit(0 if report(path, a.out, template='plain') else 1)
