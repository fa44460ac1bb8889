"""Stage 2 data: LLaVA-Instruct 665k mix (llava_v1_5_mix665k.json) with its five image sources.

    python data_recipes/llava_instruct.py --out data/llava_instruct [--drop-missing]

Layout under OUT (the paths inside the JSON): coco/train2017, gqa/images, ocr_vqa/images, textvqa/train_images,
vg/VG_100K, vg/VG_100K_2. COCO, GQA, TextVQA and Visual Genome are downloaded here (about 60 GB); OCR-VQA's
images come from its own script (https://ocr-vqa.github.io: loadDataset.py), saved as `ocr_vqa/images/<id>.jpg`.
`--drop-missing` writes `llava_v1_5_mix665k.available.json` with only the samples whose image is present (and
the text-only ones), so a run can start before every source is in place; the report says how many were dropped.
"""
import argparse, json, sys
from pathlib import Path
from _common import extract, fetch, report, write_llava_json

REPO, JSON = 'liuhaotian/LLaVA-Instruct-150K', 'llava_v1_5_mix665k.json'
SOURCES = {  # archive url -> folder it is extracted into (relative to OUT)
    'http://images.cocodataset.org/zips/train2017.zip': 'coco',
    'https://downloads.cs.stanford.edu/nlp/data/gqa/images.zip': 'gqa',
    'https://dl.fbaipublicfiles.com/textvqa/images/train_val_images.zip': 'textvqa',
    'https://cs.stanford.edu/people/rak248/VG_100K_2/images.zip': 'vg',
    'https://cs.stanford.edu/people/rak248/VG_100K_2/images2.zip': 'vg',
}

def keep_available(src_json:Path, out:Path)->tuple[Path, int]:
    "Write the samples whose image exists under `out` (and the text-only ones); return the path and how many were dropped."
    samples = json.loads(Path(src_json).read_text())
    kept = [s for s in samples if not s.get('image') or (Path(out)/s['image']).is_file()]
    return write_llava_json(kept, Path(out)/JSON.replace('.json', '.available.json')), len(samples) - len(kept)

def prepare(src_json:Path, archives:dict[Path, str], out:Path, drop_missing:bool=False)->Path:
    "Extract the image archives into their folders and place the JSON; returns the JSON the trainer should read."
    for archive, folder in archives.items(): extract(archive, Path(out)/folder)
    dest = Path(out)/JSON
    if not dest.exists(): write_llava_json(json.loads(Path(src_json).read_text()), dest)
    if not drop_missing: return dest
    path, dropped = keep_available(dest, out)
    print(f'{dropped} samples dropped: their images are not under {out}')
    return path

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', type=Path, default=Path('data/llava_instruct'))
    p.add_argument('--drop-missing', action='store_true')
    a = p.parse_args()
    from huggingface_hub import hf_hub_download
    src = Path(hf_hub_download(REPO, JSON, repo_type='dataset'))
    archives = {fetch(url, a.out/'downloads'/f'{folder}-{url.rsplit("/", 1)[1]}'): folder for url, folder in SOURCES.items()}
    path = prepare(src, archives, a.out, a.drop_missing)
    sys.exit(0 if report(path, a.out) else 1)
