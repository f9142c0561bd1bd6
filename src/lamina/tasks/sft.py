"""Instruction tuning (sft) of causal LMs (GPT-2, Llama, Mistral, Qwen2): the loss covers the response
tokens only; scored by loss / perplexity on the dev file and by greedy generations of the last response
(exact match, ROUGE-1/2/L, BLEU). The best checkpoint is picked by ROUGE-L.

Data: .jsonl lines with
- `prompt` and `response`: the model reads prompt + response as one text (put your own separator at the
  end of the prompt); an end-of-sequence token follows the response, so generations learn to stop;
- or `messages`: `[{"role": "user", "content": ...}, {"role": "assistant", "content": ...}, ...]`, rendered
  with the tokenizer's chat template when it has one (else as "role: content" lines); every assistant
  turn is trained on, the last one is what evaluation generates.
.csv files take `prompt` and `response` columns. A line without a response, with an empty one, or with
`messages` but no assistant turn is an error naming the file, line and field; so is a conversation longer
than the model's context. Longer than `--max-length` (but within the context): the end is cut, logged.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .base import TaskError, TaskSpec
from .generation import GenerativeKind, context_length, records, split_file, text_field, where
from .kind import TaskOptions

log = logging.getLogger("lamina.train")

ROLES = ("system", "user", "assistant", "tool")


def _messages(rec: dict, path, line, need_answer: bool) -> list[dict]:
    messages = rec.get("messages")
    if not isinstance(messages, list) or not messages:
        raise TaskError.at(path, "field 'messages' must be a non-empty list of {role, content} objects", line)
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str) or m.get("role") not in ROLES:
            raise TaskError.at(path, f"field 'messages': turn {i} needs a 'role' ({', '.join(ROLES)}) and a string "
                                     "'content'", line)
    if need_answer:
        answers = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        if not answers:
            raise TaskError.at(path, "field 'messages': no assistant turn to train on", line)
        if not messages[answers[-1]]["content"].strip():
            raise TaskError.at(path, f"field 'messages': assistant turn {answers[-1]} is empty", line)
        messages = messages[:answers[-1] + 1]  # turns after the last answer teach nothing
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def load_sft(path, limit: int | None = None, need_answer: bool = True) -> list[dict]:
    """{"id", "prompt", "response"} or {"id", "messages"}, plus "file" and "line", per line."""
    path = Path(path)
    examples = []
    for line, rec in records(path):
        ex = {"id": str(rec.get("id", len(examples))), "file": str(path), "line": line}
        if "messages" in rec:
            both = [k for k in ("prompt", "response") if k in rec]
            if both:  # which one would be trained on is not the user's to guess
                raise TaskError.at(path, f"a row gives both 'messages' and '{both[0]}'; give one form per row "
                                         "(a chat, or a prompt and response)", line)
            ex["messages"] = _messages(rec, path, line, need_answer)
        else:
            ex["prompt"] = text_field(rec, "prompt", path, line, empty_ok=True)
            ex["response"] = text_field(rec, "response", path, line, required=need_answer)
        examples.append(ex)
        if limit is not None and len(examples) >= limit:
            break
    if not examples and limit != 0:
        raise TaskError.at(path, "no data rows (empty dataset)")
    return examples


def _plain_chat(messages: list[dict], generation_prompt: bool) -> str:
    """The format used when the tokenizer has no chat template: one "role: content" line per turn."""
    text = "".join(f"{m['role']}: {m['content']}\n" for m in messages)
    return text + ("assistant: " if generation_prompt else "")


def segments(example: dict, tokenizer, for_prediction: bool = False) -> list[tuple[str, bool]]:
    """The example as consecutive texts, each marked whether the loss covers it. For prediction: the prompt
    only (a trailing `response` is ignored; `messages` get the assistant turn's opening)."""
    if "messages" not in example:
        return [(example["prompt"], False)] + ([] if for_prediction else [(example["response"], True)])
    messages = example["messages"]
    template = getattr(tokenizer, "chat_template", None)

    def render(turns, generation_prompt):
        if template:
            return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=generation_prompt)
        return _plain_chat(turns, generation_prompt)

    if for_prediction:
        return [(render(messages, True), False)]
    out, done = [], ""
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        opening, closed = render(messages[:i], True), render(messages[:i + 1], False)
        if not (opening.startswith(done) and closed.startswith(opening)):
            raise TaskError(f"{where(example)}: field 'messages': the chat template does not render turn by turn "
                            "(a rendered conversation is not the start of the longer one), so the assistant turns "
                            "cannot be found")
        out += [(opening[len(done):], False), (closed[len(opening):], True)]
        done = closed
    return out


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def _bos(tokenizer, first_text: str) -> list[int]:
    """[bos] when the tokenizer puts one in front of a text by itself (Llama) and the text lacks it."""
    bos = tokenizer.bos_token_id
    if bos is None or (tokenizer.bos_token and first_text.startswith(tokenizer.bos_token)):
        return []
    plain = tokenizer("x")["input_ids"]
    return [bos] if plain and plain[0] == bos else []


class SFTKind(GenerativeKind):
    name = "sft"
    data_tasks = ("sft", "instruct", "chat")
    input_help = "'prompt' or 'messages' (and optionally 'id')"
    decoder_only = True
    input_field = "prompt"

    def load_split(self, spec, data, split, limit=None):
        return load_sft(split_file(data, split), limit), None

    def model_class(self, spec, config):
        import transformers as T

        from lamina.arch import family_of

        if [name for name, _ in family_of(config).stacks] == ["encoder"]:  # BERT-likes have an LM head class, but
            # one that predicts masked tokens: as a causal LM its head would start untrained
            raise TaskError(f"task 'sft' trains a decoder-only language model (GPT-2, Llama-family); "
                            f"{config.model_type} is an encoder-only model")
        return T.AutoModelForCausalLM, {}

    def reference(self, example: dict) -> str:
        if "messages" in example:
            return next(m["content"] for m in reversed(example["messages"]) if m["role"] == "assistant")
        return example["response"]

    def encode(self, spec, examples, tokenizer, options: TaskOptions, train: bool) -> list[dict]:
        context = context_length(options.model_config)
        eos = tokenizer.eos_token_id
        features, cut = [], 0
        for i, ex in enumerate(examples):
            parts = segments(ex, tokenizer)
            ids = _bos(tokenizer, parts[0][0])
            labels = [-100] * len(ids)
            for text, trained in parts:
                piece = _ids(tokenizer, text)
                if trained:
                    prompt_len = len(ids)  # generation starts where the last trained stretch does
                ids += piece
                labels += piece if trained else [-100] * len(piece)
            if eos is not None and (not ids or ids[-1] != eos):  # the response ends: generations learn to stop
                ids.append(eos)
                labels.append(eos)
            field = "messages" if "messages" in ex else "response"
            if context is not None and len(ids) > context:
                raise TaskError(f"{where(ex)}: field {field!r}: {len(ids)} tokens with the prompt, more than the "
                                f"model's context of {context}")
            if prompt_len >= options.max_length:
                field = "messages" if "messages" in ex else "prompt"
                raise TaskError(f"{where(ex)}: field {field!r}: {prompt_len} prompt tokens leave no room for the "
                                f"response within --max-length {options.max_length}")
            if len(ids) > options.max_length:
                ids, labels, cut = ids[:options.max_length], labels[:options.max_length], cut + 1
            feature = {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}
            if not train:
                feature.update(example=i, prompt_ids=ids[:prompt_len], reference=self.reference(ex))
            features.append(feature)
        if cut:
            log.info("%s: %d of %d examples cut at --max-length %d tokens", spec.name, cut, len(examples),
                     options.max_length)
        if train:
            self.longest_target(options, [{"labels": self._last_labels(f)} for f in features])
        return features

    @staticmethod
    def _last_labels(feature: dict) -> list[int]:
        """The labels of the final trained stretch (what evaluation generates)."""
        labels, end = feature["labels"], len(feature["labels"])
        start = end
        while start > 0 and labels[start - 1] != -100:
            start -= 1
        return labels[start:end]

    def score_generations(self, spec, texts, examples):
        from .generation import text_metrics

        return text_metrics(texts, [self.reference(ex).strip() for ex in examples])

    def read_inputs(self, spec, path: Path) -> list[dict]:
        return load_sft(path, need_answer=False)

    def predict(self, model, tokenizer, spec, examples, options: TaskOptions) -> list[dict]:
        """The generated response."""
        context = context_length(model.config)
        prompts = []
        for ex in examples:
            text = segments(ex, tokenizer, for_prediction=True)[0][0]
            ids = _bos(tokenizer, text) + _ids(tokenizer, text)
            if context is not None and len(ids) >= context:
                field = "messages" if "messages" in ex else "prompt"
                raise TaskError(f"{where(ex)}: field {field!r}: {len(ids)} tokens leave no room to generate within "
                                f"the model's context of {context}")
            prompts.append(ids)
        texts = self.generate(model, tokenizer, prompts, options)
        return [{"id": ex["id"], "generation": text} for ex, text in zip(examples, texts)]
