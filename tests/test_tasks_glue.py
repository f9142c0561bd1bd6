"""GLUE loaders on tiny files written in each task's exact original format."""

import random

import pytest

from lamina.tasks import GLUE_TASKS, TaskError, get_task, load_glue, load_mrpc_raw

BOM = "\ufeff"
MNLI_TRAIN_HEADER = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
                     "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label")
MNLI_DEV_HEADER = MNLI_TRAIN_HEADER.replace("label1\tgold_label", "label1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label")
STSB_HEADER = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"


def write(path, lines, bom=False, final_newline=True):
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines) + ("\n" if final_newline else "")
    path.write_text((BOM if bom else "") + text, encoding="utf-8")
    return path


def mnli_row(i, s1, s2, gold, dev=False):
    labels = [gold] * (5 if dev else 1)
    return "\t".join([str(i), "31193", f"{i}n", "government", f"( ( {s1} ) )", f"( {s2} )",
                      f"(ROOT {s1})", f"(ROOT {s2})", s1, s2, *labels, gold])


@pytest.fixture
def glue_root(tmp_path):
    """Two or three rows per task, each file in GLUE's exact layout."""
    r = tmp_path / "glue"
    # CoLA: no header; source, label, original mark, sentence. dev.tsv has no final newline upstream.
    write(r / "CoLA/train.tsv", ["gj04\t1\t\tOur friends won't buy this analysis.",
                                 "gj04\t0\t*\tThey drank the pub."])
    write(r / "CoLA/dev.tsv", ["gj04\t1\t\tThe sailors rode the breeze clear of the rocks.",
                               'cj99\t0\t*\tHe said "so.'], final_newline=False)
    write(r / "CoLA/test.tsv", ["index\tsentence", "0\tBill whistled past the house."])
    # SST-2: trailing space before the tab is how SST-2 ships.
    write(r / "SST-2/train.tsv", ["sentence\tlabel", "hide new secretions from the parental units \t0",
                                  "it 's a \"charming journey . \t1"])
    write(r / "SST-2/dev.tsv", ["sentence\tlabel", "unflinchingly bleak and desperate \t0"])
    # MRPC (GLUE files start with a BOM; unbalanced quotes need QUOTE_NONE).
    mrpc_header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"
    write(r / "MRPC/train.tsv", [mrpc_header,
                                 '1\t702876\t702977\tAmrozi called him "the witness.\tReferring to him as "the witness".',
                                 "0\t2108705\t2108831\tYucaipa owned Dominick's.\tYucaipa bought Dominick's in 1995."],
          bom=True)
    write(r / "MRPC/dev.tsv", [mrpc_header, "1\t1355540\t1355592\tHe said so.\tHe said it."], bom=True)
    write(r / "MRPC/test.tsv", ["index\t#1 ID\t#2 ID\t#1 String\t#2 String", "0\t1089874\t1089925\tA.\tB."])
    # STS-B: 10 columns, sentences 8th/9th, score last.
    write(r / "STS-B/train.tsv", [STSB_HEADER,
                                  "0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA plane is taking off.\t"
                                  "An air plane is taking off.\t5.000",
                                  "1\tmain-news\theadlines\t2013\t0002\tnone\tnone\tA man plays.\tA dog runs.\t0.250"])
    write(r / "STS-B/dev.tsv", [STSB_HEADER, "0\tmain-captions\tMSRvid\t2012test\t0000\tnone\tnone\tA.\tB.\t3.800"])
    # QQP
    write(r / "QQP/train.tsv", ["id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
                                "133273\t213221\t213222\tHow is life?\tWhat is life?\t0",
                                "402555\t536040\t536041\tHow do I learn?\tHow can I learn?\t1"])
    write(r / "QQP/dev.tsv", ["id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
                              "40\t1\t2\tWhy?\tWhy not?\t1"])
    # MNLI: 12 columns in train, 16 in dev, matched and mismatched dev files.
    write(r / "MNLI/train.tsv", [MNLI_TRAIN_HEADER, mnli_row(0, "Conceptually cream skimming", "Product", "neutral"),
                                 mnli_row(1, "you know", "You lose", "entailment")])
    write(r / "MNLI/dev_matched.tsv", [MNLI_DEV_HEADER, mnli_row(0, "The new rights", "Everyone", "contradiction", True)])
    write(r / "MNLI/dev_mismatched.tsv", [MNLI_DEV_HEADER, mnli_row(0, "Your contribution", "It helped", "entailment", True),
                                          mnli_row(1, "The answer", "No answer", "neutral", True)])
    # QNLI / RTE with string labels; WNLI with 0/1.
    write(r / "QNLI/dev.tsv", ["index\tquestion\tsentence\tlabel",
                               "0\tWhat came into force?\tThe constitution came into force.\tentailment",
                               "1\tWhat city?\tThe Ill below Strasbourg.\tnot_entailment"])
    write(r / "RTE/train.tsv", ["index\tsentence1\tsentence2\tlabel",
                                "0\tNo weapons found in Iraq yet.\tWeapons found in Iraq.\tnot_entailment",
                                "1\tPope Benedict XVI was installed.\tBenedict is the new pope.\tentailment"])
    write(r / "RTE/dev.tsv", ["index\tsentence1\tsentence2\tlabel", "0\tA.\tB.\tentailment"])
    write(r / "WNLI/train.tsv", ["index\tsentence1\tsentence2\tlabel",
                                 "0\tI stuck a pin through a carrot.\tThe carrot had a hole.\t1",
                                 "1\tJohn could not see.\tJohn is short.\t0"])
    return r


def test_every_task_parses(glue_root):
    cola = load_glue("cola", glue_root, "train")
    assert cola == [
        {"text": "Our friends won't buy this analysis.", "text_pair": None, "label": 1, "id": "0"},
        {"text": "They drank the pub.", "text_pair": None, "label": 0, "id": "1"},
    ]
    cola_dev = load_glue("cola", glue_root, "dev")  # no final newline, a lone double quote
    assert [e["text"] for e in cola_dev] == ["The sailors rode the breeze clear of the rocks.", 'He said "so.']
    assert load_glue("cola", glue_root, "test")[0] == {"text": "Bill whistled past the house.", "text_pair": None,
                                                       "label": None, "id": "0"}

    sst = load_glue("sst2", glue_root, "train")
    assert [(e["text"], e["label"]) for e in sst] == [("hide new secretions from the parental units ", 0),
                                                      ("it 's a \"charming journey . ", 1)]

    mrpc = load_glue("mrpc", glue_root, "train")
    assert mrpc[0]["text"] == 'Amrozi called him "the witness.'  # BOM gone, quotes kept as they are
    assert mrpc[0]["text_pair"] == 'Referring to him as "the witness".'
    assert [e["label"] for e in mrpc] == [1, 0]
    assert mrpc[0]["id"] == "702876-702977"
    assert load_glue("mrpc", glue_root, "test")[0]["label"] is None

    stsb = load_glue("stsb", glue_root, "train")
    assert [(e["text"], e["text_pair"], e["label"]) for e in stsb] == [
        ("A plane is taking off.", "An air plane is taking off.", 5.0), ("A man plays.", "A dog runs.", 0.25)]
    assert isinstance(stsb[0]["label"], float)

    qqp = load_glue("qqp", glue_root, "train")
    assert [(e["id"], e["text"], e["text_pair"], e["label"]) for e in qqp] == [
        ("133273", "How is life?", "What is life?", 0), ("402555", "How do I learn?", "How can I learn?", 1)]

    # MNLI label order: entailment 0, neutral 1, contradiction 2 (as nyu-mll/glue)
    mnli = load_glue("mnli", glue_root, "train")
    assert [(e["text"], e["text_pair"], e["label"]) for e in mnli] == [
        ("Conceptually cream skimming", "Product", 1), ("you know", "You lose", 0)]
    assert [e["label"] for e in load_glue("mnli", glue_root, "validation_matched")] == [2]
    assert [e["label"] for e in load_glue("mnli", glue_root, "validation")] == [2]  # validation = matched
    assert [e["label"] for e in load_glue("mnli", glue_root, "dev_mismatched")] == [0, 1]
    assert [e["label"] for e in load_glue("mnli_mismatched", glue_root, "validation")] == [0, 1]

    qnli = load_glue("qnli", glue_root, "dev")
    assert [e["label"] for e in qnli] == [0, 1]  # entailment 0, not_entailment 1
    assert qnli[0]["text"] == "What came into force?"
    assert [e["label"] for e in load_glue("rte", glue_root, "train")] == [1, 0]
    assert [e["label"] for e in load_glue("wnli", glue_root, "train")] == [1, 0]
    assert load_glue("rte", glue_root, "validation", limit=1)[0]["text"] == "A."


def test_task_folder_itself_is_accepted(glue_root):
    assert len(load_glue("sst2", glue_root / "SST-2", "train")) == 2


def test_specs():
    assert set(GLUE_TASKS) >= {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"}
    stsb = get_task("stsb")
    assert stsb.kind == "regression" and stsb.num_labels == 1 and stsb.labels == ()
    assert get_task("mnli").num_labels == 3
    assert get_task("cola").id2label == {0: "unacceptable", 1: "acceptable"}
    assert get_task("rte").label2id == {"entailment": 0, "not_entailment": 1}
    assert get_task("mnli").splits["validation_mismatched"] == "dev_mismatched.tsv"
    with pytest.raises(TaskError, match="unknown split 'bogus'"):
        get_task("sst2").resolve_split("bogus")


def test_missing_file(tmp_path):
    with pytest.raises(TaskError, match=r"RTE/train\.tsv: file not found"):
        load_glue("rte", tmp_path, "train")


def test_missing_column(glue_root):
    write(glue_root / "SST-2/train.tsv", ["sentence\tlabels", "good \t1"])
    with pytest.raises(TaskError, match=r"SST-2/train\.tsv:1: missing column 'label'"):
        load_glue("sst2", glue_root, "train")
    write(glue_root / "CoLA/train.tsv", ["gj04\t1\t\tfine.", "gj04\t1\tno sentence"])
    with pytest.raises(TaskError, match=r"CoLA/train\.tsv:2: missing column 'sentence'"):
        load_glue("cola", glue_root, "train")


def test_wrong_column_count_names_line(glue_root):
    write(glue_root / "STS-B/dev.tsv", [STSB_HEADER, "0\tg\tf\ty\t0\tn\tn\tA.\tB.\t1.0",
                                        "1\tg\tf\ty\t0\tn\tn\tA stray\ttab.\tB.\t2.0"])
    with pytest.raises(TaskError, match=r"STS-B/dev\.tsv:3: expected 10 .* found 11"):
        load_glue("stsb", glue_root, "dev")


def test_bad_label_names_file_line_value(glue_root):
    write(glue_root / "RTE/dev.tsv", ["index\tsentence1\tsentence2\tlabel", "0\tA.\tB.\tentailment",
                                      "1\tC.\tD.\tentailed"])
    with pytest.raises(TaskError, match=r"RTE/dev\.tsv:3: column 'label': label 'entailed' not in label set"):
        load_glue("rte", glue_root, "dev")
    write(glue_root / "STS-B/dev.tsv", [STSB_HEADER, "0\tg\tf\ty\t0\tn\tn\tA.\tB.\thigh"])
    with pytest.raises(TaskError, match=r"STS-B/dev\.tsv:2: column 'score': score 'high' is not a number"):
        load_glue("stsb", glue_root, "dev")


def test_empty_files(glue_root):
    write(glue_root / "SST-2/dev.tsv", ["sentence\tlabel"])
    with pytest.raises(TaskError, match=r"SST-2/dev\.tsv: no data rows"):
        load_glue("sst2", glue_root, "dev")
    (glue_root / "QNLI/dev.tsv").write_text("")
    with pytest.raises(TaskError, match=r"QNLI/dev\.tsv: empty file"):
        load_glue("qnli", glue_root, "dev")
    (glue_root / "CoLA/dev.tsv").write_text("\n")
    with pytest.raises(TaskError, match="empty dataset"):
        load_glue("cola", glue_root, "dev")


# --------------------------------------------------------------------------- raw MRPC


def raw_rows(n, start_id=1000):
    return [f"{i % 2}\t{start_id + 2 * i}\t{start_id + 2 * i + 1}\tSentence \"{i}.\tOther {i}." for i in range(n)]


def test_mrpc_raw_with_dev_ids(tmp_path):
    d = tmp_path / "MRPC"
    header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"
    write(d / "msr_paraphrase_train.txt", [header, *raw_rows(6)], bom=True)
    write(d / "msr_paraphrase_test.txt", [header, *raw_rows(2, start_id=9000)], bom=True)
    write(d / "dev_ids.tsv", ["1002\t1003", "1008\t1009"])  # rows 1 and 4
    train = load_mrpc_raw(tmp_path, "train")
    dev = load_mrpc_raw(tmp_path, "dev")
    assert [e["id"] for e in dev] == ["1002-1003", "1008-1009"]
    assert [e["label"] for e in dev] == [1, 0]
    assert [e["id"] for e in train] == ["1000-1001", "1004-1005", "1006-1007", "1010-1011"]
    assert train[0]["text"] == 'Sentence "0.'
    test = load_mrpc_raw(tmp_path, "test")
    assert [e["id"] for e in test] == ["9000-9001", "9002-9003"] and test[1]["label"] == 1
    # load_glue falls back to the raw files when GLUE's train.tsv/dev.tsv are absent
    assert load_glue("mrpc", tmp_path, "validation") == dev


def test_mrpc_raw_seeded_split(tmp_path):
    d = tmp_path / "MRPC"
    write(d / "msr_paraphrase_train.txt", ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String", *raw_rows(420)], bom=True)
    train = load_mrpc_raw(d, "train")
    dev = load_mrpc_raw(d, "validation")
    assert (len(train), len(dev)) == (12, 408)
    picked = sorted(random.Random(0).sample(range(420), 408))  # the documented rule
    assert [e["id"] for e in dev] == [f"{1000 + 2 * i}-{1001 + 2 * i}" for i in picked]
    assert not {e["id"] for e in train} & {e["id"] for e in dev}
    assert load_mrpc_raw(d, "validation") == dev  # deterministic


def test_mrpc_raw_errors(tmp_path):
    d = tmp_path / "MRPC"
    with pytest.raises(TaskError, match=r"msr_paraphrase_test\.txt: file not found"):
        load_mrpc_raw(d, "test")
    write(d / "msr_paraphrase_test.txt", ["Quality\t#1 ID\t#1 String\t#2 String", "1\t1\tA\tB"], bom=True)
    with pytest.raises(TaskError, match="missing column '#2 ID'"):
        load_mrpc_raw(d, "test")
    write(d / "msr_paraphrase_test.txt", ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String", "yes\t1\t2\tA\tB"], bom=True)
    with pytest.raises(TaskError, match=r"msr_paraphrase_test\.txt:2: column 'Quality': label 'yes'"):
        load_mrpc_raw(d, "test")


def test_hub_loader_without_datasets_says_how_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "datasets":
            raise ImportError("no datasets")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    from lamina.tasks import load_glue_hub

    with pytest.raises(TaskError, match="pip install datasets"):
        load_glue_hub("sst2", "train")
