#!/usr/bin/env bash
# The GPU work of issues 6, 8 and 9 as prepared device calls, since a task lent a machine gets
# 15 minutes of it in all and one command at most 10 (benchmarks/README.md, "GPU runs"): a
# session has time for `pretrain` and `bench`, or for `mert` and one of them.
#
#   bash benchmarks/device_run.sh prepare       # here: CIFAR-10 train split, zstd-packed, into data_local/cifar10
#   bash benchmarks/device_run.sh pretrain      # there, carry ["data_local/cifar10"]: GMML ViT-Ti, PRETRAIN_SECONDS
#   bash benchmarks/device_run.sh bench         # there: bench_gmml (bf16, fp32), bench_mert, bench_checkpointing (bf16)
#   bash benchmarks/device_run.sh prepare_mert  # here: rendered clips as Ogg and the wheels the device lacks
#   bash benchmarks/device_run.sh mert          # there, carry ["data_local/mert"]: MERT tiny, PRETRAIN_SECONDS
#   bash benchmarks/device_run.sh prepare_tu    # here: the TU set NCI1's raw files into data_local/tu
#   bash benchmarks/device_run.sh nci1          # there, carry ["data_local/tu"]: GraphMAE NCI1 seeds NCI1_SEEDS
#   bash benchmarks/device_run.sh all bench:150 pretrain   # there: the stages named, in order, each cut
#                                                          # at its seconds (STAGE_TIMEOUT if none) and packed
#                                                          # with its log into $OUT/STAGE.tar (a call brings
#                                                          # back 8 files at most)
#
# Results land in $OUT (the device tool's folder that comes back; runs/device here).
# Settings (environment): PRETRAIN_SECONDS (300), BATCH (GMML, 256), MERT_BATCH (64), WORKERS
# (14), FALLBACK_STEPS (5000, if the throughput measurement fails), GMML_INIT (a checkpoint
# `pretrain` goes on from, e.g. gmml-vit-tiny-cifar10: `zoo pretrain gmml --init`, since the
# run's own checkpoint.pt is too large to travel back; default: a random init), GMML_SEED (0; give
# a run that goes on from GMML_INIT another, so that it draws other crops and corruptions), DEVICE (cuda; cpu runs
# the stages without bf16, to check the script itself), STAGE_TIMEOUT (`all`: seconds, 600),
# NCI1_SEEDS ("2 3 4"), NCI1_SECONDS (420: each seed's time limit; under `all`, at most the
# stage's seconds less one minute).
set -euo pipefail

STAGE=${1:?usage: device_run.sh prepare|pretrain|bench|prepare_mert|mert|prepare_tu|nci1|all STAGE...}
OUT=${OUT:-runs/device}
DEVICE=${DEVICE:-cuda}
PRETRAIN_SECONDS=${PRETRAIN_SECONDS:-300}
BATCH=${BATCH:-256}
WORKERS=${WORKERS:-14}
DATA=data_local/cifar10
MERT_DATA=data_local/mert
TU_DATA=data_local/tu
PYTHON=${PYTHON:-python3}
export PYTHONPATH=.:benchmarks PYTHONUNBUFFERED=1
BF16=()
if [[ $DEVICE == cuda* ]]; then BF16=(--bf16); fi
mkdir -p "$OUT"

prepare() {
    # The parquet's JPEG bytes, unchanged, recompressed with zstd: 46 MB -> 15 MB, small
    # enough to travel beside the checkout (64 MiB in all).
    mkdir -p "$DATA"
    "$PYTHON" -c 'import sys, pyarrow.parquet as pq
pq.write_table(pq.read_table(sys.argv[1]), sys.argv[2], compression="zstd", compression_level=19)' \
        ../shared/data/cifar10/train-00000-of-00001.parquet "$DATA/train-00000-of-00001.parquet"
    ls -l "$DATA"
}

pretrain() {
    # Measure first, then size the run so that its cosine schedule ends inside the time:
    # steps = 90 % of what the slower of the measured training and batch-making rates allows
    # in PRETRAIN_SECONDS (FALLBACK_STEPS if the measurement fails, so that a broken benchmark
    # does not cost the run). A 20-step measurement of training runs on batches the workers
    # made ahead, so alone it overstates a whole run: 4,899 against 3,307 images/s on an H200,
    # where batch making measured 3,517.
    "$PYTHON" benchmarks/bench_gmml_pretrain.py --data "$DATA" --device "$DEVICE" "${BF16[@]}" --workers "$WORKERS" \
        --batch-size "$BATCH" --steps 20 --warmup 5 --threads 2 --markdown --json "$OUT/bench_gmml_pretrain.json" \
        | tee "$OUT/bench_gmml_pretrain.md" || echo "bench_gmml_pretrain failed" >&2
    steps=$("$PYTHON" -c 'import json, sys
rates = json.load(open(sys.argv[1]))["images_per_second"]["vit-tiny (12 x 192)"]
rate = min(rates["training"], rates["batch_making"])
print(max(10, int(0.9 * rate * float(sys.argv[2]) / int(sys.argv[3]))))' \
        "$OUT/bench_gmml_pretrain.json" "$PRETRAIN_SECONDS" "$BATCH" || echo "${FALLBACK_STEPS:-5000}")
    echo "pretraining for $steps steps of $BATCH images"
    local model=(--variant tiny --set image_size=32 --set patch_size=4)
    if [[ -n ${GMML_INIT:-} ]]; then model=(--init "$GMML_INIT"); fi
    "$PYTHON" -m zoo.cli pretrain gmml --data "$DATA" --split train -o runs/gmml-device "${model[@]}" \
        --steps "$steps" --batch-size "$BATCH" --workers "$WORKERS" \
        --device "$DEVICE" "${BF16[@]}" --threads 2 --time-limit $((PRETRAIN_SECONDS + 60)) --seed "${GMML_SEED:-0}" \
        --no-progress
    # float16 with the mean of patches as default pool, as the embedded checkpoint stores it;
    # the fp32 folder (22 MB) is over the 16 MiB a returned file may hold. The run's card and
    # loss curve go with it.
    "$PYTHON" -c 'import dataclasses, pathlib, sys, zoo
run = pathlib.Path(sys.argv[1])
encoder = zoo.load(run)
encoder.config = dataclasses.replace(encoder.config, pool="mean")
encoder.half().save_pretrained(sys.argv[2], model_card=(run / "README.md").read_text(),
                               extra_files={"loss.png": run / "loss.png"})' runs/gmml-device/encoder "$OUT/encoder"
    cp runs/gmml-device/log.jsonl runs/gmml-device/loss.png "$OUT/"
}

prepare_mert() {
    # The device has neither soundfile (with its cffi) nor nnAudio; the clips travel as Ogg
    # Vorbis, since the 466 five-second FLAC clips (67 MB) are over what the checkout leaves.
    [[ -f runs/clips24k/clips.csv ]] || "$PYTHON" -m modalities.audio.rendering clips -o runs/clips24k \
        --sampling-rate 24000 --max-scores 13
    mkdir -p "$MERT_DATA/clips" "$MERT_DATA/wheels"
    "$PYTHON" -c 'import pathlib, sys, soundfile
out = pathlib.Path(sys.argv[2])
for clip in sorted(pathlib.Path(sys.argv[1]).glob("*.flac")):
    audio, rate = soundfile.read(clip, dtype="float32")
    soundfile.write(out / (clip.stem + ".ogg"), audio, rate, format="OGG", subtype="VORBIS", compression_level=0.5)' \
        runs/clips24k "$MERT_DATA/clips"
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform any -d "$MERT_DATA/wheels" soundfile cffi pycparser nnAudio
    du -sh "$MERT_DATA"/*
}

mert() {
    # Sized like `pretrain`, from the rate of a 30-step run in a scratch folder; the recipe is
    # the best measured on CPU (benchmarks/README.md, "MERT pretrained here on CPU") at the
    # lower lr that longer runs need. The encoder and log come back; probe it here with
    # probe_mert.py.
    if ! "$PYTHON" -c "import soundfile, nnAudio" 2>/dev/null; then
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
            "$MERT_DATA"/wheels/*.whl
        export PYTHONPATH=$PYTHONPATH:/tmp/site
    fi
    recipe=(--data "$MERT_DATA/clips" --variant tiny --codebooks 1 --clusters 256 --kmeans-frames 50000
            --chroma-weight 2.31 --feature-penalty 10 --feature-grad-mult 0.1 --cqt-target log --max-seconds 2
            --batch-size "${MERT_BATCH:-64}"
            --lr 5e-4 --device "$DEVICE" "${BF16[@]}" --threads 8 --seed 0 --no-progress)
    rm -rf runs/mert-rate runs/mert-device  # a run left there would resume instead of measuring
    "$PYTHON" -m zoo.cli pretrain mert "${recipe[@]}" -o runs/mert-rate --steps 30
    steps=$("$PYTHON" -c 'import json, sys
log = [json.loads(line) for line in open(sys.argv[1])]
per_step = (log[-1]["elapsed"] - log[9]["elapsed"]) / (len(log) - 10)
print(max(10, int(0.9 * float(sys.argv[2]) / per_step)))' runs/mert-rate/log.jsonl "$PRETRAIN_SECONDS" \
        || echo "${FALLBACK_STEPS:-5000}")
    echo "pretraining for $steps steps"
    # The teachers' targets (labels.pt) are the rate run's: same clips, recipe and seed. On the
    # H200 they took about 2 minutes; computing them twice did not fit a 265 s stage.
    mkdir -p runs/mert-device
    cp runs/mert-rate/labels.pt runs/mert-device/
    "$PYTHON" -m zoo.cli pretrain mert "${recipe[@]}" -o runs/mert-device --steps "$steps" \
        --time-limit $((PRETRAIN_SECONDS + 60))
    mkdir -p "$OUT/encoder"
    cp runs/mert-device/encoder/* "$OUT/encoder/"
    cp runs/mert-device/log.jsonl runs/mert-device/loss.png "$OUT/"
}

prepare_tu() {
    mkdir -p "$TU_DATA/NCI1"
    cp -r ../shared/data/tu/NCI1/raw "$TU_DATA/NCI1/"
    du -sh "$TU_DATA/NCI1"
}

nci1() {
    # Issue 9's missing NCI1 pretraining seeds (300 epochs, 77,100 steps of 16 graphs; about
    # 107 minutes each on one CPU core here), one process per seed sharing the GPU, each with
    # the recipe of graphmae-nci1 unchanged (fp32). A seed that its time limit stops brings
    # back its checkpoint (16 MB) to be finished here: `zoo pretrain graphmae` resumes it on
    # CPU. Its encoder is probed here (benchmarks/README.md, "TU graph classification").
    local seed seeds=${NCI1_SEEDS:-2 3 4} seconds=${NCI1_SECONDS:-420}
    # PyG processes the raw files once, before the seeds start
    "$PYTHON" -c 'import sys; from modalities.graphs.datasets import load_dataset; load_dataset("nci1", sys.argv[1])' \
        "$TU_DATA"
    if [[ -n ${STAGE_DEADLINE:-} ]]; then
        # the seeds' start (imports, loading) and the copying below need about a minute of the
        # stage; a stage cut by `all` before it copied brought nothing back (2026-12-04)
        local left=$(( STAGE_DEADLINE - $(date +%s) - 60 ))
        if (( left < seconds )); then seconds=$left; fi
    fi
    echo "each seed trains for $seconds s at most"
    for seed in $seeds; do
        "$PYTHON" -m zoo.cli pretrain graphmae --dataset nci1 --data "$TU_DATA" -o "runs/graphmae-nci1-s$seed" \
            --seed "$seed" --device "$DEVICE" --threads 1 --checkpoint-every 10000 \
            --time-limit "$seconds" --no-progress > "$OUT/s$seed.log" 2>&1 &
    done
    wait || true
    for seed in $seeds; do
        mkdir -p "$OUT/s$seed"
        cp -r runs/graphmae-nci1-s"$seed"/{args.json,log.jsonl,loss.png,encoder} "$OUT/s$seed/" || true
        if grep -q "time limit reached" "$OUT/s$seed.log"; then  # unfinished: its encoder is a partial one
            cp runs/graphmae-nci1-s"$seed"/checkpoint.pt "$OUT/s$seed/"
        fi
    done
}

bench() {
    "$PYTHON" benchmarks/bench_gmml.py --device "$DEVICE" "${BF16[@]}" --sizes base --cases b1,b256 --repeats 5 \
        --markdown --json "$OUT/bench_gmml_bf16.json"
    "$PYTHON" benchmarks/bench_gmml.py --device "$DEVICE" --sizes base --cases b1,b256 --repeats 5 \
        --markdown --json "$OUT/bench_gmml_fp32.json"
    "$PYTHON" benchmarks/bench_mert.py --device "$DEVICE" "${BF16[@]}" --markdown --json "$OUT/bench_mert_bf16.json"
    "$PYTHON" benchmarks/bench_checkpointing.py --device "$DEVICE" "${BF16[@]}" --repeats 3 --markdown \
        --json "$OUT/bench_checkpointing_bf16.json"
}

all() {
    # One device call for several stages: a stage that fails or runs past STAGE_TIMEOUT
    # still leaves its tar, and the next stage runs.
    local scratch stage limit
    scratch=$(mktemp -d)
    for stage in "$@"; do
        limit=${STAGE_TIMEOUT:-600}
        if [[ $stage == *:* ]]; then limit=${stage#*:}; stage=${stage%%:*}; fi
        mkdir -p "$scratch/$stage"
        OUT="$scratch/$stage" STAGE_DEADLINE=$(( $(date +%s) + limit )) timeout "$limit" bash "$0" "$stage" 2>&1 \
            | tee "$scratch/$stage/$stage.log" || echo "stage $stage failed or ran past ${limit} s" >&2
        tar -C "$scratch" -cf "$OUT/$stage.tar" "$stage"
        # a returned file holds 16 MiB at most: `cat STAGE.tar.part-* | tar -x` joins the parts
        if (( $(stat -c %s "$OUT/$stage.tar") > 15 * 1024 * 1024 )); then
            split -b 15M "$OUT/$stage.tar" "$OUT/$stage.tar.part-" && rm "$OUT/$stage.tar"
        fi
    done
}

case $STAGE in
    prepare | pretrain | bench | prepare_mert | mert | prepare_tu | nci1) "$STAGE" ;;
    all) shift; all "$@" ;;
    *) echo "unknown stage '$STAGE'; use prepare, pretrain, bench, prepare_mert, mert, prepare_tu, nci1 or all" >&2; exit 2 ;;
esac
