#!/usr/bin/env bash
# A real Slurm (docs/cluster.md): brings up a one-node cluster on localhost (munged, slurmctld,
# slurmd, a minimal slurm.conf and a munge key in a temp dir), submits the example sweep
# (scripts/slurm/submit.sh: a 4-task array job and the dependent merge job) for a small spec,
# waits for them, and checks that the merged report equals a single-process run of the same
# spec case for case (ids, statuses, every deterministic metric). Everything is torn down on
# exit. Installs nothing: skipped (exit 77, with the reason) when slurm-wlm or munge is missing
# (scripts/setup.sh installs them with ATTN_TEST_PACKAGES=1), when not root, or when the daemons
# cannot start here.
set -u
bin=$1 src=$2
. "$src/tests/cli/common.bash"
skip() { echo "skip: $*"; exit 77; }
for tool in munged munge slurmctld slurmd sbatch squeue scontrol; do
  command -v "$tool" >/dev/null || PATH=$PATH:/usr/sbin command -v "$tool" >/dev/null ||
    skip "$tool is missing (Debian packages slurm-wlm and munge; scripts/setup.sh with ATTN_TEST_PACKAGES=1)"
done
export PATH=$PATH:/usr/sbin
command -v python3 >/dev/null || skip "python3 is needed to compare the reports"
[ "$(id -u)" -eq 0 ] || skip "slurmd must run as root to start jobs (this test runs as $(id -un))"

tmp=$(mktemp -d)
chmod 755 "$tmp"  # munge's socket lives here: every user needs to reach it
export SLURM_CONF=$tmp/slurm.conf
teardown() {
  scontrol shutdown >/dev/null 2>&1
  for f in "$tmp/slurmd.pid" "$tmp/slurmctld.pid" "$tmp/munged.pid"; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; [ "$f" = "$tmp/munged.pid" ] && kill "$pid"; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
  done
  rm -rf "$tmp"
}
trap teardown EXIT
logs() { tail -n 20 "$tmp"/log/*.log "$tmp"/out/*.out 2>/dev/null; }

# Free ports for the two daemons.
read -r port1 port2 < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
mkdir -p "$tmp/state" "$tmp/spool" "$tmp/log" "$tmp/out"
dd if=/dev/urandom of="$tmp/munge.key" bs=1024 count=1 status=none
chmod 400 "$tmp/munge.key"
munged --force --key-file="$tmp/munge.key" --socket="$tmp/munge.sock" --log-file="$tmp/log/munged.log" \
  --pid-file="$tmp/munged.pid" --seed-file="$tmp/munged.seed" >/dev/null 2>&1 ||
  skip "munged cannot start here: $(tail -n 3 "$tmp/log/munged.log" 2>/dev/null)"
host=$(hostname -s)
cat > "$SLURM_CONF" <<EOF
ClusterName=attntest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port1
SlurmdPort=$port2
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$tmp/munge.sock
CredType=cred/munge
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/log/slurmctld.log
SlurmdLogFile=$tmp/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/builtin
InactiveLimit=0
MinJobAge=300
KillWait=5
NodeName=attnnode NodeHostname=$host NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=1000 State=UNKNOWN
PartitionName=test Nodes=attnnode Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld -i >/dev/null 2>&1 || skip "slurmctld cannot start here: $(logs)"
slurmd -N attnnode >/dev/null 2>&1 || skip "slurmd cannot start here: $(logs)"
up=0
for _ in $(seq 1 100); do
  sinfo -h -o '%t' 2>/dev/null | grep -Eq '^(idle|mix|alloc)' && { up=1; break; }
  sleep 0.2
done
[ $up = 1 ] || skip "the one-node cluster did not come up within 20 s: $(sinfo 2>&1; logs)"
echo "ok: one-node Slurm up (ports $port1, $port2)"

# A small spec with deterministic metrics, 10 cases of unequal cost.
cat > "$tmp/det.yaml" <<'YAML'
name: slurm-det
seed: 5
problem: {heads: 2, head_dim: 16, seq_len: [64, 128], causal: true}
variants:
  - mha
  - {name: streaming, window: [16, 32], sinks: 2}
  - {name: diag, weights: [softmax, relu]}
metrics:
  flops: {}
  accuracy: {rows: 8}
  recall: {queries: 8}
YAML
sub=$(bash "$src/scripts/slurm/submit.sh" --bin "$bin" "$tmp/det.yaml" 4 "$tmp/out" 2>&1) || fail "submit failed: $sub"
echo "ok: $sub"
done_=0
for _ in $(seq 1 600); do
  [ -z "$(squeue -h 2>/dev/null)" ] && { done_=1; break; }
  sleep 0.2
done
[ $done_ = 1 ] || fail "the jobs did not finish within 2 minutes: $(squeue; logs)"
[ -f "$tmp/out/merged.json" ] || fail "no merged report: $(logs)"
for i in 0 1 2 3; do
  f=$(printf '%s/out/shard-%04d.json' "$tmp" "$i")
  [ -f "$f" ] || fail "no report of shard $i: $(logs)"
  python3 - "$f" "$i" <<'PY' || fail "shard $i's report lacks its Slurm provenance"
import json, sys
sh = json.load(open(sys.argv[1]))["meta"]["run"]["shard"]
assert sh["index"] == int(sys.argv[2]) and sh["count"] == 4 and sh["source"] == "slurm", sh
assert sh["slurm"]["SLURM_ARRAY_TASK_ID"] == sys.argv[2], sh
PY
done
echo "ok: 4 shard reports, each with its array task in meta.run.shard"

"$bin" run "$tmp/det.yaml" -o "$tmp/single.json" --quiet >/dev/null 2>&1 || fail "the single-process run failed"
out=$(python3 "$src/scripts/compare_deterministic.py" "$tmp/single.json" "$tmp/out/merged.json") ||
  fail "merged report differs from the single run: $out"
echo "ok: merged == single run: $out"
python3 - "$tmp/out/merged.json" <<'PY' || fail "merged report's provenance"
import json, sys
d = json.load(open(sys.argv[1]))
m = d["meta"]["merge"]
assert d["complete"] and m["shards"] == 4 and len(m["sources"]) == 4, m
assert "shard" not in d["meta"]["run"]
assert [c["index"] for c in d["cases"]] == list(range(10))
PY
echo "ok: meta.merge records the 4 sources; cases in the spec's order"
