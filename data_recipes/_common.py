"""Shared by the recipes: resumable downloads, zip extraction that can be re-run, LLaVA JSON written atomically."""
import json, shutil, urllib.request, zipfile
from pathlib import Path
from tqdm.auto import tqdm
from hera_nbs.data import check_llava
from hera_nbs.store import atomic_write_bytes

def fetch(url:str, dest:Path)->Path:
    "Download `url` to `dest`, resuming a partial `.part` file; the final name appears only when complete."
    dest = Path(dest)
    if dest.exists(): return dest
    part = dest.with_name(dest.name + '.part'); dest.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={'Range': f'bytes={have}-'} if have else {})
    with urllib.request.urlopen(req) as r, open(part, 'ab' if r.status == 206 else 'wb') as f:
        total = int(r.headers.get('Content-Length', 0)) + (have if r.status == 206 else 0)
        with tqdm(total=total, initial=have if r.status == 206 else 0, unit='B', unit_scale=True, desc=dest.name) as bar:
            while chunk := r.read(1 << 20): f.write(chunk); bar.update(len(chunk))
    part.replace(dest)
    return dest

def extract(archive:Path, dest:Path)->Path:
    "Unzip `archive` into `dest` once (a marker file records completion, so an interrupted extraction is redone)."
    marker = Path(dest)/f'.extracted-{Path(archive).name}'
    if not marker.exists():
        with zipfile.ZipFile(archive) as z: z.extractall(dest)
        marker.touch()
    return Path(dest)

def write_llava_json(samples:list[dict], path:Path)->Path:
    "Write LLaVA samples atomically."
    atomic_write_bytes(Path(path), json.dumps(samples).encode())
    return Path(path)

def caption_sample(sid, image:str, caption:str)->dict:
    "A stage-1 style sample: the image, then its caption as the answer."
    return dict(id=str(sid), image=image, conversations=[{'from': 'human', 'value': '<image>\nDescribe the image in detail.'},
                                                        {'from': 'gpt', 'value': caption.strip()}])

def report(path:Path, image_folder:Path|None=None, template:str='chat')->bool:
    "Run `hera-data check` on the result and print its report; True when there are no errors."
    r = check_llava(path, image_folder, template=template)
    print(r)
    return r.ok

def copy(src:Path, dest:Path)->Path:
    "Copy `src` to `dest` once; the final name appears only when the copy is complete."
    dest = Path(dest); dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists():
        part = dest.with_name(dest.name + '.part')
        shutil.copyfile(src, part); part.replace(dest)
    return dest
