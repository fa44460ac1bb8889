"""Head-scoring data: the paper's 1,000 GranD image-caption pairs (Hugging Face dataset aimagelab/HeRA_GranD).

    python data_recipes/grand_scoring.py --out data/grand
    hera-score --model qwen2.5-3b --teacher dinov2-l --data data/grand/grand_1000.json --n-samples 1000

The dataset card could not be read when this recipe was written, so the converter does not assume a schema: it
reads every JSON / JSONL / parquet table in the snapshot, takes the image column (a path or encoded bytes) and the
caption column (detected among common names, or given with --image-key / --caption-key), and writes a LLaVA JSON
plus `images/`. If it cannot tell, it stops and lists the columns it found.
"""
import argparse, json, sys
from pathlib import Path
from _common import caption_sample, report, write_llava_json

IMAGE_KEYS = ('image', 'image_path', 'file_name', 'filename', 'img', 'image_file')
CAPTION_KEYS = ('caption', 'dense_caption', 'detailed_caption', 'description', 'text', 'short_caption')

def read_rows(src:Path)->list[dict]:
    "All rows of the JSON, JSONL and parquet files under `src`."
    rows = []
    for f in sorted(Path(src).rglob('*')):
        if f.suffix == '.json':
            data = json.loads(f.read_text())
            rows += data if isinstance(data, list) else data.get('data', data.get('annotations', []))
        elif f.suffix == '.jsonl': rows += [json.loads(l) for l in f.read_text().splitlines() if l.strip()]
        elif f.suffix == '.parquet':
            import pandas as pd          # needs pyarrow; installed with `datasets`
            rows += pd.read_parquet(f).to_dict('records')
    return rows

def pick(row:dict, wanted:str|None, candidates:tuple)->str:
    if wanted: return wanted
    found = [k for k in candidates if k in row]
    if not found: raise ValueError(f'none of {candidates} in the rows (columns: {sorted(row)}): pass the key explicitly')
    return found[0]

def convert(src:Path, out:Path, image_key:str|None=None, caption_key:str|None=None, limit:int=1000)->Path:
    "LLaVA JSON + images/ from the snapshot folder `src`."
    rows = read_rows(src)
    if not rows: raise ValueError(f'no JSON, JSONL or parquet rows under {src}')
    ik, ck = pick(rows[0], image_key, IMAGE_KEYS), pick(rows[0], caption_key, CAPTION_KEYS)
    (Path(out)/'images').mkdir(parents=True, exist_ok=True)
    samples = []
    for i, row in enumerate(rows[:limit]):
        img = row[ik]
        if isinstance(img, dict): img = img.get('bytes') or img.get('path')      # parquet Image feature
        if isinstance(img, (bytes, bytearray)):
            name = f'images/{i:05d}.jpg'; (Path(out)/name).write_bytes(img)
        else:
            found = next((p for p in (Path(src)/img, Path(src)/'images'/img) if p.is_file()), None)
            if found is None: raise FileNotFoundError(f'row {i}: image {img!r} not found under {src}')
            name = f'images/{Path(img).name}'
            if not (Path(out)/name).exists(): (Path(out)/name).write_bytes(found.read_bytes())
        samples.append(caption_sample(row.get('id', i), name, str(row[ck])))
    return write_llava_json(samples, Path(out)/f'grand_{len(samples)}.json')

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', type=Path, default=Path('data/grand'))
    p.add_argument('--image-key'); p.add_argument('--caption-key'); p.add_argument('--limit', type=int, default=1000)
    a = p.parse_args()
    from huggingface_hub import snapshot_download
    src = Path(snapshot_download('aimagelab/HeRA_GranD', repo_type='dataset'))
    path = convert(src, a.out, a.image_key, a.caption_key, a.limit)
    sys.exit(0 if report(path, a.out, template='plain') else 1)
