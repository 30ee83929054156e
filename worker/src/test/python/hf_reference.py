"""Golden values from the reference implementation: Hugging Face transformers + PEFT.

    python3 hf_reference.py make  OUT      # writes OUT/<case>/{model files, adapter/, reference.safetensors}
    python3 hf_reference.py check DIR      # checks what lorafleet wrote into DIR (see HfReferenceTest)

`make` builds tiny models with transformers' own classes, saves them with save_pretrained (so the
config.json and safetensors files are what transformers writes), wraps them with PEFT's
get_peft_model, gives A and B random values and saves the adapter with PEFT's save_pretrained.
It then records, in float64, the base logits and loss, the adapted logits and loss, the gradient
of the (token-mean) loss with respect to every PEFT parameter, the merged model's logits, and a
greedy generation. worker/src/test/resources/hf-reference holds its output, and
io.lorafleet.worker.HfReferenceTest holds lorafleet against it.

`check` goes the other way: it loads adapters and merged exports that lorafleet wrote, with PEFT
and transformers, and compares their logits with the ones lorafleet recorded beside them.
"""
import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file

T = 12  # sequence length of the reference batch
VOCAB = 64
GEN_PROMPT = [1, 5, 9, 13]
GEN_NEW = 8


def perturb(model, seed):
    """Weights of std 0.3 (norm scales near 1) so that every term, and every gradient, matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ("norm" in name or ".ln_" in name or name.startswith("ln_f") or ".ln_f" in name) and not name.endswith("bias"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))


def cases():
    from transformers import GPT2Config, GPTJConfig, LlamaConfig, MistralConfig, Qwen2Config
    from peft import LoraConfig

    llama3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
              "original_max_position_embeddings": 64}
    return [
        dict(name="llama",
             config=LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=40, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                rms_norm_eps=1e-6, rope_theta=10000.0, rope_scaling=llama3,
                                tie_word_embeddings=False, bos_token_id=1, eos_token_id=2),
             lora=LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", rank_pattern={"v_proj": 2},
                             alpha_pattern={"down_proj": 3.0}, lora_dropout=0.0, task_type="CAUSAL_LM"),
             dtype=torch.float32),
        dict(name="llama-bf16",
             config=LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=40, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                                rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=True,
                                bos_token_id=1, eos_token_id=2),
             lora=LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.0,
                             task_type="CAUSAL_LM"),
             dtype=torch.bfloat16),
        dict(name="qwen2",
             config=Qwen2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True,
                                use_sliding_window=False, bos_token_id=1, eos_token_id=2),
             lora=LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj", "k_proj", "v_proj"], use_rslora=True,
                             bias="lora_only", lora_dropout=0.0, task_type="CAUSAL_LM"),
             dtype=torch.float32),
        dict(name="mistral",
             config=MistralConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=40, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=1, head_dim=16,
                                  max_position_embeddings=256, rms_norm_eps=1e-5, rope_theta=10000.0,
                                  sliding_window=5, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2),
             lora=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "o_proj", "gate_proj"],
                             layers_to_transform=[1], lora_dropout=0.0, task_type="CAUSAL_LM"),
             dtype=torch.float32),
        dict(name="gpt2",
             config=GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                               layer_norm_epsilon=1e-5, bos_token_id=1, eos_token_id=2),
             lora=LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn", "c_proj", "c_fc"], fan_in_fan_out=True,
                             bias="all", lora_dropout=0.0, task_type="CAUSAL_LM"),
             dtype=torch.float32),
        dict(name="gpt2-f16",
             config=GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                               layer_norm_epsilon=1e-5, bos_token_id=1, eos_token_id=2),
             lora=LoraConfig(r=2, lora_alpha=4, target_modules=["c_attn"], fan_in_fan_out=True, lora_dropout=0.0,
                             task_type="CAUSAL_LM"),
             dtype=torch.float16),
        # GPT-J: parallel attention and MLP, rotary on 4 of each head's 8 channels, lm_head with a bias.
        # No fixtures yet (no machine with transformers has run this case); GptjReferenceTest holds
        # lorafleet to modeling_gptj.py's definitions meanwhile.
        dict(name="gptj",
             config=GPTJConfig(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, rotary_dim=4, n_positions=64,
                               layer_norm_epsilon=1e-5, bos_token_id=1, eos_token_id=2),
             lora=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "out_proj", "fc_in", "fc_out"],
                             lora_dropout=0.0, task_type="CAUSAL_LM"),
             dtype=torch.float32),
    ]


def batch():
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(3, VOCAB, (2, T), generator=g)
    labels = ids.clone()
    labels[0, :5] = -100  # context tokens of row 0
    labels[1, :3] = -100
    labels[1, 8] = -100  # a masked token inside the target, too
    return ids, labels


def strip_adapter_name(name):
    return name.replace(".lora_A.default.", ".lora_A.").replace(".lora_B.default.", ".lora_B.")


def greedy(model, prompt):
    """Greedy decoding by full recomputation, recording the smallest top-1/top-2 logit margin."""
    ids = torch.tensor([prompt])
    margin = float("inf")
    for _ in range(GEN_NEW):
        logits = model(input_ids=ids).logits[0, -1]
        top = torch.topk(logits, 2).values
        margin = min(margin, float(top[0] - top[1]))
        ids = torch.cat([ids, logits.argmax().view(1, 1)], dim=1)
    return ids[0, len(prompt):], margin


def make(out):
    from transformers import AutoModelForCausalLM
    from peft import get_peft_model

    torch.manual_seed(0)
    for i, case in enumerate(cases()):
        name = case["name"]
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        model = AutoModelForCausalLM.from_config(case["config"], attn_implementation="eager")
        perturb(model, 100 + i)
        model = model.to(case["dtype"])
        model.save_pretrained(d)
        # Reload what was written, so the reference computes on exactly the stored weights.
        model = AutoModelForCausalLM.from_pretrained(d, attn_implementation="eager", dtype=torch.float64)
        model.eval()
        ids, labels = batch()
        ref = {"input_ids": ids, "labels": labels}
        with torch.no_grad():
            o = model(input_ids=ids, labels=labels)
        ref["base.logits"] = o.logits.float()
        ref["base.loss"] = o.loss.reshape(1)

        peft = get_peft_model(model, case["lora"])
        g = torch.Generator().manual_seed(200 + i)
        with torch.no_grad():
            for pname, p in peft.named_parameters():
                if "lora_A" in pname or "lora_B" in pname:
                    p.copy_(0.2 * torch.randn(p.shape, generator=g, dtype=torch.float64))
                elif p.requires_grad:  # trained biases start from the base's and move
                    p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=torch.float64))
        peft = peft.float()
        peft.save_pretrained(os.path.join(d, "adapter"))
        peft = peft.double()  # the reference runs in float64 on the float32 values PEFT just wrote
        o = peft(input_ids=ids, labels=labels)
        o.loss.backward()
        ref["lora.logits"] = o.logits.detach().float()
        ref["lora.loss"] = o.loss.detach().reshape(1)
        trainable = [(n, p) for n, p in peft.named_parameters() if p.requires_grad]
        for pname, p in trainable:
            ref["grad." + strip_adapter_name(pname)] = p.grad.detach()
        print(name, "trainable:", [strip_adapter_name(n) for n, _ in trainable])
        with torch.no_grad():
            gen, margin = greedy(peft, GEN_PROMPT)
        assert margin > 1e-3, f"{name}: greedy margin {margin} is too small for a stable reference"
        ref["generate.prompt"] = torch.tensor(GEN_PROMPT)
        ref["generate.lora"] = gen
        merged = peft.merge_and_unload()
        with torch.no_grad():
            ref["merged.logits"] = merged(input_ids=ids).logits.float()
        save_file({k: v.contiguous() for k, v in ref.items()}, os.path.join(d, "reference.safetensors"),
                  metadata={"transformers": __import__("transformers").__version__,
                            "peft": __import__("peft").__version__, "torch": torch.__version__})
        print(name, "loss", float(ref["base.loss"]), "->", float(ref["lora.loss"]), "margin", margin,
              "files", sorted(os.listdir(d)), "adapter", sorted(os.listdir(os.path.join(d, "adapter"))))
        print(open(os.path.join(d, "config.json")).read())
        print(open(os.path.join(d, "adapter", "adapter_config.json")).read())
        print(sorted(load_file(os.path.join(d, "adapter", "adapter_model.safetensors")).keys()))


def encoder_cases():
    """Sequence classifiers (the LoRA paper's GLUE setting). No fixtures yet: no machine with transformers has
    run these; EncoderReferenceTest holds lorafleet to modeling_roberta.py's and modeling_deberta_v2.py's
    definitions meanwhile."""
    from transformers import DebertaV2Config, RobertaConfig
    from peft import LoraConfig

    return [
        dict(name="roberta-cls",
             config=RobertaConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=48, max_position_embeddings=T + 2, type_vocab_size=1, pad_token_id=1,
                                  layer_norm_eps=1e-5, num_labels=3),
             lora=LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value", "dense"], lora_dropout=0.0,
                             task_type="SEQ_CLS")),
        dict(name="deberta-v3-cls",
             config=DebertaV2Config(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                    intermediate_size=48, max_position_embeddings=64, type_vocab_size=0,
                                    relative_attention=True, position_buckets=8, max_relative_positions=-1,
                                    pos_att_type=["p2c", "c2p"], share_att_key=True, norm_rel_ebd="layer_norm",
                                    position_biased_input=False, pooler_hidden_size=32, pooler_hidden_act="gelu",
                                    layer_norm_eps=1e-7, num_labels=2, pad_token_id=0),
             lora=LoraConfig(r=4, lora_alpha=8, target_modules=["query_proj", "key_proj", "value_proj"],
                             modules_to_save=["pooler"], lora_dropout=0.0, task_type="SEQ_CLS")),
    ]


def make_encoders(out):
    """As make, for sequence classifiers: row 1 is right-padded (attention_mask 0), labels are class ids, the
    head is PEFT's modules_to_save copy (perturbed, so that it differs from the base's), and there is no generation."""
    from transformers import AutoModelForSequenceClassification
    from peft import get_peft_model

    for i, case in enumerate(encoder_cases()):
        d = os.path.join(out, case["name"])
        os.makedirs(d, exist_ok=True)
        model = AutoModelForSequenceClassification.from_config(case["config"], attn_implementation="eager")
        perturb(model, 300 + i)
        model.save_pretrained(d)
        model = AutoModelForSequenceClassification.from_pretrained(d, attn_implementation="eager", dtype=torch.float64).eval()
        g = torch.Generator().manual_seed(17)
        ids = torch.randint(3, VOCAB, (2, T), generator=g)
        mask = torch.ones(2, T, dtype=torch.long)
        mask[1, 7:] = 0
        ids[1, 7:] = case["config"].pad_token_id
        labels = torch.tensor([1, 0])
        ref = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        with torch.no_grad():
            o = model(input_ids=ids, attention_mask=mask, labels=labels)
        ref["base.logits"], ref["base.loss"] = o.logits.float(), o.loss.reshape(1)
        peft = get_peft_model(model, case["lora"])
        gen = torch.Generator().manual_seed(400 + i)
        with torch.no_grad():
            for pname, p in peft.named_parameters():
                if p.requires_grad:
                    p.add_(0.2 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
        peft.float().save_pretrained(os.path.join(d, "adapter"))
        peft = peft.double()
        o = peft(input_ids=ids, attention_mask=mask, labels=labels)
        o.loss.backward()
        ref["lora.logits"], ref["lora.loss"] = o.logits.detach().float(), o.loss.detach().reshape(1)
        for pname, p in peft.named_parameters():
            if p.requires_grad:
                ref["grad." + strip_adapter_name(pname).replace(".modules_to_save.default.", ".")] = p.grad.detach()
        with torch.no_grad():
            ref["merged.logits"] = peft.merge_and_unload()(input_ids=ids, attention_mask=mask).logits.float()
        save_file({k: v.contiguous() for k, v in ref.items()}, os.path.join(d, "reference.safetensors"),
                  metadata={"transformers": __import__("transformers").__version__,
                            "peft": __import__("peft").__version__, "torch": torch.__version__})
        print(case["name"], "loss", float(ref["base.loss"]), "->", float(ref["lora.loss"]))
        print(sorted(load_file(os.path.join(d, "adapter", "adapter_model.safetensors")).keys()))


def check(root):
    """Loads lorafleet's adapters and merged exports with PEFT/transformers; compares with lorafleet's logits."""
    from transformers import AutoModelForCausalLM
    from peft import PeftModel

    failures = 0
    for name in sorted(os.listdir(root)):
        d = os.path.join(root, name)
        if not os.path.isfile(os.path.join(d, "lorafleet.safetensors")):
            continue
        mine = load_file(os.path.join(d, "lorafleet.safetensors"))
        ids = mine["input_ids"]
        # a sequence classifier (EncoderAdapterTest's export) reads its padded batch with the attention mask it wrote
        task = json.load(open(os.path.join(d, "adapter", "adapter_config.json"))).get("task_type")
        Auto = AutoModelForCausalLM
        extra = {}
        if task == "SEQ_CLS":
            from transformers import AutoModelForSequenceClassification as Auto
            extra = {"attention_mask": mine["attention_mask"]}
        base = Auto.from_pretrained(os.path.join(d, "base"), dtype=torch.float64, attn_implementation="eager")
        peft = PeftModel.from_pretrained(base, os.path.join(d, "adapter")).double().eval()
        with torch.no_grad():
            got = peft(input_ids=ids, **extra).logits.float()
        err = (got - mine["lora.logits"]).abs().max().item()
        scale = mine["lora.logits"].abs().max().item()
        ok = err <= 1e-4 * max(1.0, scale)
        failures += not ok
        print(f"{name}: PEFT loads lorafleet's adapter; max |logit diff| {err:.3g} (max |logit| {scale:.3g}) {'OK' if ok else 'FAIL'}")
        if os.path.isdir(os.path.join(d, "merged")):
            merged = Auto.from_pretrained(os.path.join(d, "merged"), dtype=torch.float64, attn_implementation="eager")
            with torch.no_grad():
                got = merged(input_ids=ids, **extra).logits.float()
            err = (got - mine["lora.logits"]).abs().max().item()
            ok = err <= 1e-4 * max(1.0, scale)
            failures += not ok
            print(f"{name}: transformers loads lorafleet's merged export; max |logit diff| {err:.3g} {'OK' if ok else 'FAIL'}")
        tok = os.path.join(d, "base", "tokenizer.json")
        if os.path.isfile(tok) and "tokenizer.ids" in mine:
            from transformers import AutoTokenizer
            t = AutoTokenizer.from_pretrained(os.path.join(d, "base"))
            text = open(os.path.join(d, "tokenizer.text")).read()
            got = t(text)["input_ids"]
            want = mine["tokenizer.ids"].tolist()
            ok = got == want
            failures += not ok
            print(f"{name}: transformers' tokenizer on lorafleet's tokenizer.json: {got} vs lorafleet {want} {'OK' if ok else 'FAIL'}")
    failures += check_dataset(os.path.join(root, "dataset"))
    print("failures:", failures)
    return failures


def check_dataset(d):
    """A `lorafleet prepare` output read as Hugging Face `datasets` reads a save_to_disk split."""
    if not os.path.isdir(d):
        return 0
    import pyarrow as pa

    failures = 0
    manifest = json.load(open(os.path.join(d, "manifest.json")))
    for split in ("train", "validation"):
        sd = os.path.join(d, split)
        if not os.path.isdir(sd):
            continue
        state = json.load(open(os.path.join(sd, "state.json")))
        info = json.load(open(os.path.join(sd, "dataset_info.json")))
        rows, masked = 0, 0
        for f in state["_data_files"]:
            with pa.memory_map(os.path.join(sd, f["filename"])) as src:
                table = pa.ipc.open_stream(src).read_all()  # the format datasets' Dataset.from_file reads
            hf = json.loads(table.schema.metadata[b"huggingface"])
            assert hf["info"]["features"] == info["features"], (hf, info)
            assert table.schema.field("input_ids").type == pa.list_(pa.int32()), table.schema
            ids, labels = table.column("input_ids").to_pylist(), table.column("labels").to_pylist()
            assert all(len(a) == len(b) for a, b in zip(ids, labels))
            rows += table.num_rows
            masked += sum(x == -100 for row in labels for x in row)
        want = manifest["splits"][split]["records"]
        ok = rows > 0 and masked > 0 and want == rows
        failures += not ok
        print(f"dataset/{split}: pyarrow reads {len(state['_data_files'])} shards, {rows} rows (manifest {want}), "
              f"{masked} masked labels {'OK' if ok else 'FAIL'}")
        try:
            import datasets
            ds = datasets.load_from_disk(sd)
            print(f"dataset/{split}: datasets.load_from_disk: {ds}")
        except ImportError:
            print(f"dataset/{split}: the datasets package is not installed here; checked with pyarrow only")
    return failures


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("make", "check"):
        sys.exit(__doc__)
    if sys.argv[1] == "make":
        make(sys.argv[2])
        make_encoders(sys.argv[2])
    else:
        sys.exit(1 if check(sys.argv[2]) else 0)
