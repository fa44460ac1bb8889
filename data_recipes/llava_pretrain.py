"""Stage 1 data: LLaVA-Pretrain (BLIP-captioned LAION/CC/SBU, 558k image-caption pairs), as LLaVA-1.5 uses it.

    python data_recipes/llava_pretrain.py --out data/llava_pretrain

Writes `OUT/blip_laion_cc_sbu_558k.json` and `OUT/images/` (the layout configs/*.yaml read), then checks it.
Needs internet and about 27 GB of disk (images.zip, then its contents).
"""
import argparse, sys
from pathlib import Path
from _common import copy, extract, report

REPO, JSON, IMAGES = 'liuhaotian/LLaVA-Pretrain', 'blip_laion_cc_sbu_558k.json', 'images.zip'

def prepare(src_json:Path, images_zip:Path, out:Path)->Path:
    "Lay out the downloaded files as the trainer reads them; returns the JSON path."
    extract(images_zip, Path(out)/'images')
    return copy(src_json, Path(out)/JSON)

def download(cache:Path|None=None)->tuple[Path, Path]:
    from huggingface_hub import hf_hub_download
    get = lambda f: Path(hf_hub_download(REPO, f, repo_type='dataset', cache_dir=cache))
    return get(JSON), get(IMAGES)

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', type=Path, default=Path('data/llava_pretrain'))
    a = p.parse_args()
    path = prepare(*download(), a.out)
    sys.exit(0 if report(path, a.out/'images', template='plain') else 1)
