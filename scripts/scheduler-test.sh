#!/usr/bin/env bash
# The scheduler tests of sharded validation.
#
# Kubernetes (no cluster here): the Indexed Job's container command from
# deploy/kubernetes/validate-job.yaml is run once per index with JOB_COMPLETION_INDEX set, as the
# Job controller would, with the volume's paths mapped to a temporary folder, then the merge Job's
# script; the report must equal the unsharded run's.
#
# Slurm: installs Debian's slurm-wlm and munge where missing, starts
# munged, slurmctld and slurmd on localhost with a throw-away configuration, submits
# deploy/slurm/validate.sbatch (an array of 4 shards and the merge job) on the digits test images,
# and checks the merged report equals the unsharded `validate --json` apart from timings. Stops
# every daemon it started, whatever happens. Prints "N passed, N failed".
# Skips (exit 0, saying so) only where Slurm cannot be installed.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
tool=${CNX:-$root/.build/debug/convnext-convert}
[[ -x $tool ]] || { echo "slurm-test: build the tool first ($tool)" >&2; exit 1; }

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    echo "slurm-test: installing slurm-wlm and munge"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null; }; then
        echo "slurm-test: SKIPPED: slurm-wlm and munge cannot be installed here"
        exit 0
    fi
fi

work=$(mktemp -d /tmp/cnx-slurm.XXXXXX)
pids=()
cleanup() {
    [[ -n ${SLURM_CONF:-} ]] && scancel --quiet --user=root >/dev/null 2>&1
    for f in "$work"/run/slurmd.pid "$work"/run/slurmctld.pid "$work"/munge/munged.pid; do
        [[ -f $f ]] && kill "$(cat "$f")" 2>/dev/null
    done
    sleep 1
    for f in "$work"/run/slurmd.pid "$work"/run/slurmctld.pid "$work"/munge/munged.pid; do
        [[ -f $f ]] && kill -9 "$(cat "$f")" 2>/dev/null
    done
    rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work"/{state,spool,log,munge,run,out}
head -c 1024 /dev/urandom > "$work/munge/munge.key"
chmod 600 "$work/munge/munge.key"
munged --key-file="$work/munge/munge.key" --socket="$work/munge/munge.sock" --pid-file="$work/munge/munged.pid" \
    --log-file="$work/log/munged.log" --seed-file="$work/munge/seed" --force || { echo "slurm-test: munged did not start" >&2; exit 1; }

# Free ports for the controller and the node daemon.
read -r ctl_port node_port < <(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
cat > "$work/slurm.conf" <<CONF
ClusterName=cnxtest
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$work/munge/munge.sock
CredType=cred/munge
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/run/slurmctld.pid
SlurmdPidFile=$work/run/slurmd.pid
SlurmctldLogFile=$work/log/slurmctld.log
SlurmdLogFile=$work/log/slurmd.log
SlurmctldPort=$ctl_port
SlurmdPort=$node_port
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
NodeName=localhost CPUs=$(nproc) RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
export SLURM_CONF=$work/slurm.conf
slurmctld -c || { echo "slurm-test: slurmctld did not start" >&2; cat "$work/log/slurmctld.log" >&2; exit 1; }
slurmd || { echo "slurm-test: slurmd did not start" >&2; cat "$work/log/slurmd.log" >&2; exit 1; }
for _ in $(seq 1 60); do
    sinfo -h -o %t 2>/dev/null | grep -q idle && break
    sleep 1
done
sinfo -h -o %t | grep -q idle || { echo "slurm-test: the node never became idle" >&2; sinfo >&2; exit 1; }

passed=0 failed=0
mask() { sed -E 's/"(seconds|images_per_second)": [-0-9.e+]+/"\1": T/g' "$1"; }
check() { if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "scheduler-test: FAILED: $*" >&2; return 1; fi; }
# The merged report against the unsharded one: equal but for timings; the differences shown if not.
same_report() {
    if ! check cmp -s <(mask "$1") <(mask "$2"); then
        diff <(mask "$1" | tr ',' '\n') <(mask "$2" | tr ',' '\n') >&2
    fi
}

# The models: the digits model as float32 and int8 .cnx.
"$tool" convert Fixtures/digits/model.onnx "$work/digits.cnx" >/dev/null
"$tool" quantize --int8 Fixtures/digits/model.onnx "$work/digits.int8.cnx" --calibration Fixtures/digits/calib.npy >/dev/null
mean=$(python3 -c 'import json; print(",".join(map(str, json.load(open("Fixtures/digits/info.json"))["mean"])))')
std=$(python3 -c 'import json; print(",".join(map(str, json.load(open("Fixtures/digits/info.json"))["std"])))')
args="--crop-pct 1 --mean $mean --std $std --threads 1"

# shellcheck disable=SC2086
"$tool" validate "$work/digits.int8.cnx" --reference "$work/digits.cnx" --data "$root/Fixtures/digits/test_png" $args \
    --json --per-class --max-drop 1 > "$work/unsharded.json"

submitted=$(CNX=$tool MODEL=$work/digits.int8.cnx REFERENCE=$work/digits.cnx DATA=$root/Fixtures/digits/test_png SHARDS=4 \
    OUT=$work/out VALIDATE_ARGS=$args MAX_DROP=1 bash deploy/slurm/validate.sbatch)
echo "slurm-test: $submitted"
for _ in $(seq 1 180); do
    [[ -z $(squeue -h 2>/dev/null) ]] && break
    sleep 1
done
squeue -h | grep -q . && { echo "slurm-test: jobs still queued after 3 minutes" >&2; squeue >&2; }
echo "slurm-test: array task outputs:"; cat "$work"/out/shard-*.out
check test -s "$work/out/report.json"
for k in 0 1 2 3; do check test -s "$work/out/part-$k.json"; done
same_report "$work/unsharded.json" "$work/out/report.json"
check grep -q "top-1 accuracy" "$work/out/report.txt"
echo "slurm-test: merged report: $(head -c 300 "$work/out/report.json")"

# Kubernetes: the Jobs' commands, index by index, on the same data.
mkdir -p "$work/k8s/models" "$work/k8s/results" "$work/k8s/data"
cp "$work/digits.int8.cnx" "$work/k8s/models/model.int8.cnx"
cp "$work/digits.cnx" "$work/k8s/models/model.cnx"
ln -s "$root/Fixtures/digits/test_png" "$work/k8s/data/val"
python3 - "$work" "$tool" "$args" <<'PY' > "$work/k8s/commands.sh"
import shlex, sys, yaml
work, tool, extra = sys.argv[1], sys.argv[2], sys.argv[3]
jobs = {d["metadata"]["name"]: d for d in yaml.safe_load_all(open("deploy/kubernetes/validate-job.yaml"))}
job = jobs["cnx-validate"]
n = job["spec"]["completions"]
c = job["spec"]["template"]["spec"]["containers"][0]
args = [a.replace("/work/", work + "/k8s/") for a in c["args"]]
assert args[args.index("--shards") + 1] == str(n), "--shards must equal completions"
for k in range(n):
    print(f"JOB_COMPLETION_INDEX={k} {shlex.quote(tool)} {' '.join(map(shlex.quote, args))} {extra}")
merge = jobs["cnx-validate-merge"]["spec"]["template"]["spec"]["containers"][0]["args"][0]
print(merge.replace("/work/", work + "/k8s/").replace("convnext-convert", shlex.quote(tool)))
PY
if bash -e "$work/k8s/commands.sh" 2> "$work/k8s/log"; then
    # The same validation unsharded, on the same paths.
    # shellcheck disable=SC2086
    "$tool" validate "$work/k8s/models/model.int8.cnx" --reference "$work/k8s/models/model.cnx" --data "$work/k8s/data/val" $args \
        --json --per-class --max-drop 1 > "$work/k8s/unsharded.json" 2>/dev/null
    same_report "$work/k8s/unsharded.json" "$work/k8s/results/report.json"
    echo "kubernetes-test: $(grep -c part "$work/k8s/log") shard lines; merged report: $(head -c 200 "$work/k8s/results/report.json")"
else
    failed=$((failed + 1)); echo "kubernetes-test: FAILED running the Jobs' commands:" >&2; cat "$work/k8s/log" >&2
fi
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
